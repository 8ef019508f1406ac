#pragma once
// Maps a /v2/ request path to an endpoint, the repository name (which may contain slashes) and
// the trailing reference (digest, tag or upload id). Names are validated here.
#include <string>
#include <string_view>

#include "registry/errors.h"

namespace vireo::registry {

enum class Endpoint {
  kBase,         // /v2/
  kCatalog,      // /v2/_catalog
  kBlob,         // /v2/<name>/blobs/<digest>
  kUploadStart,  // /v2/<name>/blobs/uploads/
  kUpload,       // /v2/<name>/blobs/uploads/<id>
  kManifest,     // /v2/<name>/manifests/<reference>
  kTags,         // /v2/<name>/tags/list
  kReferrers,    // /v2/<name>/referrers/<digest>
};

struct Route {
  Endpoint endpoint = Endpoint::kBase;
  std::string name;
  std::string ref;
};

// NAME_INVALID for a bad name, NAME_UNKNOWN (404) for a path that is no endpoint.
RegResult<Route> parse_route(std::string_view path);

// "a%2Fb+c" → "a/b c" (query strings).
std::string percent_decode_query(std::string_view s);

}  // namespace vireo::registry
