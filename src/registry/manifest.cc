#include "registry/manifest.h"

namespace vireo::registry {

namespace {

std::unexpected<RegistryError> invalid(std::string detail) {
  return reg_error(Code::kManifestInvalid, "manifest invalid", std::move(detail));
}

bool known_type(std::string_view t) {
  return t == kOciManifest || t == kOciIndex || t == kDockerManifest || t == kDockerList;
}

std::string_view strip_params(std::string_view t) {
  auto semi = t.find(';');
  if (semi != std::string_view::npos) t = t.substr(0, semi);
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  return t;
}

RegResult<std::string> optional_string(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return std::string();
  if (!it->is_string()) return invalid(fmt::format("'{}' must be a string", key));
  return it->get<std::string>();
}

RegResult<Descriptor> parse_descriptor(const Json& j, std::string_view where) {
  if (!j.is_object()) return invalid(fmt::format("{}: descriptor must be an object", where));
  Descriptor d;
  auto mt = j.find("mediaType");
  if (mt == j.end() || !mt->is_string())
    return invalid(fmt::format("{}: 'mediaType' must be a string", where));
  d.media_type = mt->get<std::string>();
  auto dg = j.find("digest");
  if (dg == j.end() || !dg->is_string())
    return invalid(fmt::format("{}: 'digest' must be a string", where));
  auto digest = parse_digest(dg->get_ref<const std::string&>());
  if (!digest) return invalid(fmt::format("{}: {}", where, digest.error().message()));
  d.digest = *digest;
  auto sz = j.find("size");
  if (sz == j.end() || !sz->is_number_integer() || sz->get<int64_t>() < 0)
    return invalid(fmt::format("{}: 'size' must be a non-negative integer", where));
  d.size = sz->get<int64_t>();
  d.artifact_type = TRY(optional_string(j, "artifactType"));
  if (auto a = j.find("annotations"); a != j.end()) {
    if (!a->is_object()) return invalid(fmt::format("{}: 'annotations' must be an object", where));
    d.annotations = *a;
  }
  d.external = j.contains("urls");
  return d;
}

RegResult<std::vector<Descriptor>> parse_list(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return invalid(fmt::format("'{}' must be an array", key));
  std::vector<Descriptor> out;
  for (size_t i = 0; i < it->size(); ++i)
    out.push_back(TRY(parse_descriptor((*it)[i], fmt::format("{}[{}]", key, i))));
  return out;
}

RegResult<std::string> media_type_of(const Json& j, std::string_view content_type) {
  std::string field = TRY(optional_string(j, "mediaType"));
  std::string_view ct = strip_params(content_type);
  if (ct.empty() || !known_type(ct)) ct = field;
  if (!known_type(ct))
    return invalid(fmt::format("unsupported manifest media type '{}'", ct.substr(0, 200)));
  if (!field.empty() && field != ct)
    return invalid(
        fmt::format("mediaType '{}' does not match Content-Type '{}'", field.substr(0, 200), ct));
  return std::string(ct);
}

RegResult<void> parse_body(const Json& j, Manifest& m) {
  if (m.is_index) {
    m.children = TRY(parse_list(j, "manifests"));
    return {};
  }
  auto config = j.find("config");
  if (config == j.end()) return invalid("missing 'config'");
  m.blobs.push_back(TRY(parse_descriptor(*config, "config")));
  auto layers = TRY(parse_list(j, "layers"));
  m.blobs.insert(m.blobs.end(), layers.begin(), layers.end());
  if (m.artifact_type.empty()) m.artifact_type = m.blobs.front().media_type;
  return {};
}

}  // namespace

RegResult<Manifest> parse_manifest(std::string_view body, std::string_view content_type) {
  if (body.size() > kMaxManifestSize)
    return reg_error(Code::kTooLarge, "manifest larger than 4 MiB");
  auto parsed = parse_json(body);
  if (!parsed) return invalid(parsed.error().message());
  const Json& j = *parsed;
  if (!j.is_object()) return invalid("manifest must be a JSON object");
  auto sv = j.find("schemaVersion");
  if (sv == j.end() || !sv->is_number_integer() || sv->get<int64_t>() != 2)
    return invalid("'schemaVersion' must be 2");
  Manifest m;
  m.media_type = TRY(media_type_of(j, content_type));
  m.is_index = m.media_type == kOciIndex || m.media_type == kDockerList;
  m.artifact_type = TRY(optional_string(j, "artifactType"));
  if (auto a = j.find("annotations"); a != j.end()) {
    if (!a->is_object()) return invalid("'annotations' must be an object");
    m.annotations = *a;
  }
  if (auto s = j.find("subject"); s != j.end()) m.subject = TRY(parse_descriptor(*s, "subject"));
  TRY(parse_body(j, m));
  return m;
}

Json descriptor_json(const Descriptor& d) {
  Json j = {{"mediaType", d.media_type}, {"digest", d.digest.str()}, {"size", d.size}};
  if (!d.artifact_type.empty()) j["artifactType"] = d.artifact_type;
  if (d.annotations.is_object()) j["annotations"] = d.annotations;
  return j;
}

}  // namespace vireo::registry
