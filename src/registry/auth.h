#pragma once
// Who may do what on the registry. Two ways, as docker-registry offers them:
// - HTTP Basic authentication against an htpasswd file's content (bcrypt "$2y$" entries, or any
//   other hash crypt(3) from libxcrypt knows). Verified credentials are cached by their SHA-256
//   so that bcrypt runs once per client, not once per request.
// - Bearer tokens (Docker's token authentication): a 401 names a token server (realm), the
//   service and the scope the request needs ("repository:team/app:pull,push"); the client comes
//   back with a JWT from that server, signed (RS256, ES256) by a key whose certificate is in the
//   registry's bundle (directly, or as the root of the token's x5c chain), issued by the
//   configured issuer for the configured service (aud), not expired, granting the action on the
//   repository (pull for GET/HEAD, push for writes, delete for DELETE, or "*"; the catalog needs
//   registry:catalog:*; a cross-repository mount also needs pull on the source).
// Thread-safe.
#include <memory>
#include <optional>
#include <string>

#include "base/json.h"
#include "base/result.h"
#include "registry/http_types.h"

namespace vireo::registry {

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // nullopt when the request may go on; else the answer (401 with a WWW-Authenticate challenge).
  virtual std::optional<Response> check(const Request& req) const = 0;
};

std::unique_ptr<Authenticator> basic_authenticator(std::string htpasswd);

struct TokenAuthOptions {
  std::string realm;        // the token server's URL, sent in challenges
  std::string service;      // the "service" of challenges and the tokens' audience
  std::string issuer;       // the tokens' "iss"
  std::string cert_bundle;  // PEM certificates whose keys may sign tokens
};
[[nodiscard]] Result<std::unique_ptr<Authenticator>> token_authenticator(TokenAuthOptions o);

// What a request needs, from its method and path: {"repository", "team/app", "pull"}; the
// name is empty for /v2/ itself (any valid token will do).
struct Scope {
  std::string type;
  std::string name;
  std::string action;
};
Scope scope_of(const Request& req);

// Verifies a compact JWS and returns its claims (exposed for the tests and the fuzz target).
[[nodiscard]] Result<Json> verify_jwt(std::string_view token, const TokenAuthOptions& o);

}  // namespace vireo::registry
