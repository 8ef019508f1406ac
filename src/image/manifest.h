#pragma once
// OCI image manifests, image indexes and image configs (and Docker's v2 schema 2 manifest and
// manifest list, which have the same shape): parsed from untrusted JSON and validated, each
// problem reported as one line naming the field ("invalid manifest: layers[1].digest: ...").
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "image/digest.h"

namespace vireo::image {

inline constexpr size_t kMaxLayers = 256;

struct Platform {
  std::string architecture;
  std::string os;
  std::string variant;
};

struct Descriptor {
  std::string media_type;
  Digest digest;
  uint64_t size = 0;
  std::optional<Platform> platform;
  std::map<std::string, std::string> annotations;

  Json to_json() const;
};

struct Manifest {
  std::string media_type;  // kOciManifest or kDockerManifest
  Descriptor config;       // an image config, or a VM disk config (media::kVmConfig)
  std::vector<Descriptor> layers;  // tar layers, or one VM disk (media::is_vm_disk)
  std::map<std::string, std::string> annotations;

  Json to_json() const;
  // A VM disk image (vm_disk.h): its single layer is a disk, never a tar.
  bool is_vm() const;
};

struct Index {
  std::string media_type;  // kOciIndex or kDockerManifestList
  std::vector<Descriptor> manifests;
};

struct ImageConfig {
  std::string architecture;
  std::string os;
  std::vector<std::string> env;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::string working_dir;
  std::string user;
  std::vector<Digest> diff_ids;
  Json raw;  // the whole document, as stored
};

enum class DocumentKind { kManifest, kIndex };

// base::parse_json, also turning nlohmann's other exceptions (a number out of range such as
// 1e999) into kInvalidArgument: every JSON text of the image store comes from outside.
[[nodiscard]] Result<Json> parse_untrusted_json(std::string_view text);

// Whether a manifest-like document is a manifest or an index: by its mediaType field, else by
// media_type_hint (the descriptor or HTTP header it came with), else by its shape.
[[nodiscard]] Result<DocumentKind> detect_kind(std::string_view json,
                                               std::string_view media_type_hint = {});
[[nodiscard]] Result<Descriptor> parse_descriptor(const Json& j);
[[nodiscard]] Result<Manifest> parse_manifest(std::string_view json);
[[nodiscard]] Result<Index> parse_index(std::string_view json);
[[nodiscard]] Result<ImageConfig> parse_config(std::string_view json);

// The index entry for os/architecture; kNotFound naming the platforms offered.
[[nodiscard]] Result<Descriptor> select_platform(const Index& index, std::string_view os = "linux",
                                                 std::string_view architecture = "amd64");

}  // namespace vireo::image
