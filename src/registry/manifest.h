#pragma once
// Parsing and validation of pushed manifests (OCI image manifest and index, Docker schema 2
// manifest and list): which blobs and child manifests a manifest references, its subject and
// artifact type. Input is untrusted; every fault is MANIFEST_INVALID with a detail.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "registry/digest.h"

namespace vireo::registry {

inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr size_t kMaxManifestSize = 4 << 20;

struct Descriptor {
  std::string media_type;
  Digest digest;
  int64_t size = 0;
  std::string artifact_type;
  Json annotations;       // null when absent
  bool external = false;  // has "urls": a foreign layer the registry need not hold
};

struct Manifest {
  std::string media_type;
  bool is_index = false;
  std::vector<Descriptor> blobs;     // config and layers of an image manifest
  std::vector<Descriptor> children;  // manifests of an index
  std::optional<Descriptor> subject;
  std::string artifact_type;  // artifactType, else the config media type (referrers API)
  Json annotations;
};

// content_type is the request's Content-Type (parameters ignored), may be empty.
RegResult<Manifest> parse_manifest(std::string_view body, std::string_view content_type);

// The descriptor of a manifest in a referrers index.
Json descriptor_json(const Descriptor& d);

}  // namespace vireo::registry
