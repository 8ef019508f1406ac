#include "image/manifest.h"

#include <fmt/ranges.h>

#include "image/media_types.h"

namespace vireo::image {

namespace {

std::unexpected<Error> invalid(std::string_view field, std::string_view what) {
  return make_error(ErrorCode::kInvalidArgument, "{}: {}", field, what);
}

Result<std::string> string_field(const Json& j, const std::string& key, const std::string& path,
                                 bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) return invalid(path + key, "missing");
    return std::string();
  }
  if (!it->is_string()) return invalid(path + key, "must be a string");
  return it->get<std::string>();
}

Result<std::vector<std::string>> string_list(const Json& j, const std::string& key,
                                             const std::string& path) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array()) return invalid(path + key, "must be an array of strings");
  for (const auto& v : *it) {
    if (!v.is_string()) return invalid(path + key, "must be an array of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<std::map<std::string, std::string>> annotations(const Json& j, const std::string& path) {
  std::map<std::string, std::string> out;
  auto it = j.find("annotations");
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_object()) return invalid(path + "annotations", "must be an object");
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string()) return invalid(path + "annotations." + k, "must be a string");
    out[k] = v.get<std::string>();
  }
  return out;
}

Result<Json> parse_object(std::string_view text) {
  Json j = TRY(parse_untrusted_json(text));
  if (!j.is_object()) return make_error(ErrorCode::kInvalidArgument, "must be a JSON object");
  return j;
}

Result<Descriptor> descriptor_at(const Json& j, const std::string& path) {
  if (!j.is_object()) return invalid(path, "must be an object");
  Descriptor d;
  d.media_type = TRY(string_field(j, "mediaType", path + ".", true));
  std::string digest = TRY(string_field(j, "digest", path + ".", true));
  d.digest = TRY_CTX(Digest::parse(digest), "{}.digest", path);
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_integer() ||
      (size->is_number_integer() && !size->is_number_unsigned() && size->get<int64_t>() < 0))
    return invalid(path + ".size", "must be a non-negative integer");
  d.size = size->get<uint64_t>();
  d.annotations = TRY(annotations(j, path + "."));
  if (auto p = j.find("platform"); p != j.end() && !p->is_null()) {
    if (!p->is_object()) return invalid(path + ".platform", "must be an object");
    Platform pl;
    pl.architecture = TRY(string_field(*p, "architecture", path + ".platform.", true));
    pl.os = TRY(string_field(*p, "os", path + ".platform.", true));
    pl.variant = TRY(string_field(*p, "variant", path + ".platform.", false));
    d.platform = pl;
  }
  return d;
}

Result<void> check_schema_version(const Json& j) {
  auto v = j.find("schemaVersion");
  if (v == j.end() || !v->is_number_integer() || v->get<int64_t>() != 2)
    return invalid("schemaVersion", "must be 2");
  return {};
}

Result<Manifest> manifest_from(const Json& j) {
  TRY(check_schema_version(j));
  Manifest m;
  m.media_type = TRY(string_field(j, "mediaType", "", false));
  if (m.media_type.empty()) m.media_type = media::kOciManifest;
  if (!media::is_manifest(m.media_type))
    return invalid("mediaType", fmt::format("'{}' is not an image manifest", m.media_type));
  if (!j.contains("config")) return invalid("config", "missing");
  m.config = TRY(descriptor_at(j["config"], "config"));
  const bool vm = m.is_vm();
  if (!vm && !media::is_config(m.config.media_type))
    return invalid("config.mediaType",
                   fmt::format("unsupported config media type '{}'", m.config.media_type));
  auto layers = j.find("layers");
  if (layers == j.end() || !layers->is_array()) return invalid("layers", "must be an array");
  if (layers->size() > kMaxLayers)
    return invalid("layers", fmt::format("{} layers, at most {}", layers->size(), kMaxLayers));
  for (size_t i = 0; i < layers->size(); ++i) {
    std::string path = fmt::format("layers[{}]", i);
    Descriptor d = TRY(descriptor_at((*layers)[i], path));
    if (vm ? !media::is_vm_disk(d.media_type) : !media::is_layer(d.media_type))
      return invalid(path + ".mediaType",
                     fmt::format("unsupported layer media type '{}'", d.media_type));
    m.layers.push_back(std::move(d));
  }
  if (vm && m.layers.size() != 1)
    return invalid("layers", "a VM disk image has exactly one layer, the disk");
  m.annotations = TRY(annotations(j, ""));
  return m;
}

Result<Index> index_from(const Json& j) {
  TRY(check_schema_version(j));
  Index index;
  index.media_type = TRY(string_field(j, "mediaType", "", false));
  if (index.media_type.empty()) index.media_type = media::kOciIndex;
  if (!media::is_index(index.media_type))
    return invalid("mediaType", fmt::format("'{}' is not an image index", index.media_type));
  auto manifests = j.find("manifests");
  if (manifests == j.end() || !manifests->is_array())
    return invalid("manifests", "must be an array");
  for (size_t i = 0; i < manifests->size() && i < 4096; ++i)
    index.manifests.push_back(TRY(descriptor_at((*manifests)[i], fmt::format("manifests[{}]", i))));
  return index;
}

Result<ImageConfig> config_from(const Json& j) {
  ImageConfig c;
  c.architecture = TRY(string_field(j, "architecture", "", true));
  c.os = TRY(string_field(j, "os", "", true));
  if (auto cfg = j.find("config"); cfg != j.end() && !cfg->is_null()) {
    if (!cfg->is_object()) return invalid("config", "must be an object");
    c.env = TRY(string_list(*cfg, "Env", "config."));
    c.entrypoint = TRY(string_list(*cfg, "Entrypoint", "config."));
    c.cmd = TRY(string_list(*cfg, "Cmd", "config."));
    c.working_dir = TRY(string_field(*cfg, "WorkingDir", "config.", false));
    c.user = TRY(string_field(*cfg, "User", "config.", false));
  }
  auto rootfs = j.find("rootfs");
  if (rootfs == j.end() || !rootfs->is_object()) return invalid("rootfs", "must be an object");
  if (TRY(string_field(*rootfs, "type", "rootfs.", true)) != "layers")
    return invalid("rootfs.type", "must be \"layers\"");
  auto ids = TRY(string_list(*rootfs, "diff_ids", "rootfs."));
  if (ids.size() > kMaxLayers) return invalid("rootfs.diff_ids", "too many layers");
  for (size_t i = 0; i < ids.size(); ++i)
    c.diff_ids.push_back(TRY_CTX(Digest::parse(ids[i]), "rootfs.diff_ids[{}]", i));
  c.raw = j;
  return c;
}

}  // namespace

Result<Json> parse_untrusted_json(std::string_view text) {
  try {
    return parse_json(text);
  } catch (const Json::exception& e) {
    std::string what = e.what();
    if (auto pos = what.find("] "); pos != std::string::npos) what = what.substr(pos + 2);
    return make_error(ErrorCode::kInvalidArgument, "invalid JSON: {}", what);
  }
}

Json Descriptor::to_json() const {
  Json j = {{"mediaType", media_type}, {"digest", digest.str()}, {"size", size}};
  if (!annotations.empty()) j["annotations"] = annotations;
  if (platform) {
    j["platform"] = {{"architecture", platform->architecture}, {"os", platform->os}};
    if (!platform->variant.empty()) j["platform"]["variant"] = platform->variant;
  }
  return j;
}

Json Manifest::to_json() const {
  Json j = {{"schemaVersion", 2}, {"mediaType", media_type}, {"config", config.to_json()}};
  j["layers"] = Json::array();
  for (const auto& l : layers) j["layers"].push_back(l.to_json());
  if (!annotations.empty()) j["annotations"] = annotations;
  return j;
}

bool Manifest::is_vm() const {
  return config.media_type == media::kVmConfig;
}

Result<DocumentKind> detect_kind(std::string_view json, std::string_view media_type_hint) {
  Json j = TRY_CTX(parse_object(json), "invalid manifest");
  std::string type = TRY_CTX(string_field(j, "mediaType", "", false), "invalid manifest");
  if (type.empty()) type = media_type_hint;
  if (media::is_manifest(type)) return DocumentKind::kManifest;
  if (media::is_index(type)) return DocumentKind::kIndex;
  if (!type.empty())
    return make_error(ErrorCode::kInvalidArgument, "unsupported manifest media type '{}'", type);
  if (j.contains("manifests")) return DocumentKind::kIndex;
  if (j.contains("layers")) return DocumentKind::kManifest;
  return make_error(ErrorCode::kInvalidArgument, "invalid manifest: neither manifest nor index");
}

Result<Descriptor> parse_descriptor(const Json& j) {
  return with_context(descriptor_at(j, "descriptor"), "invalid descriptor");
}

Result<Manifest> parse_manifest(std::string_view json) {
  Json j = TRY_CTX(parse_object(json), "invalid manifest");
  return with_context(manifest_from(j), "invalid manifest");
}

Result<Index> parse_index(std::string_view json) {
  Json j = TRY_CTX(parse_object(json), "invalid image index");
  return with_context(index_from(j), "invalid image index");
}

Result<ImageConfig> parse_config(std::string_view json) {
  Json j = TRY_CTX(parse_object(json), "invalid image config");
  return with_context(config_from(j), "invalid image config");
}

Result<Descriptor> select_platform(const Index& index, std::string_view os,
                                   std::string_view architecture) {
  std::vector<std::string> offered;
  for (const auto& d : index.manifests) {
    if (!media::is_manifest(d.media_type)) continue;
    if (!d.platform) {
      offered.push_back("unknown");
      continue;
    }
    if (d.platform->os == os && d.platform->architecture == architecture) return d;
    offered.push_back(d.platform->os + "/" + d.platform->architecture);
  }
  // An index with one manifest and no platform (as a plain OCI layout often is) is that image.
  if (index.manifests.size() == 1 && !index.manifests[0].platform &&
      media::is_manifest(index.manifests[0].media_type))
    return index.manifests[0];
  return make_error(ErrorCode::kNotFound, "no {}/{} image in the index (offered: {})", os,
                    architecture,
                    offered.empty() ? "none" : fmt::format("{}", fmt::join(offered, ", ")));
}

}  // namespace vireo::image
