#pragma once
// HTTP basic authentication against an htpasswd file's content (bcrypt "$2y$" entries, or any
// other hash crypt(3) from libxcrypt knows). Verified credentials are cached by their SHA-256 so
// that bcrypt runs once per client, not once per request. Thread-safe.
#include <string>

#include "registry/http_types.h"

namespace vireo::registry {

// True when htpasswd is empty (no authentication) or the Authorization header matches an entry.
bool authorized(const std::string& htpasswd, const std::string& authorization);
// 401 UNAUTHORIZED with a WWW-Authenticate challenge.
Response unauthorized_response();

}  // namespace vireo::registry
