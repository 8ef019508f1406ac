#include "registry/repo_index.h"

#include "base/file.h"

namespace vireo::registry {

Json RepoIndex::to_json() const {
  Json manifests_json = Json::object();
  for (const auto& [digest, m] : manifests) {
    Json e = {{"mediaType", m.media_type}, {"size", m.size}};
    if (!m.subject.empty()) e["subject"] = m.subject;
    if (!m.artifact_type.empty()) e["artifactType"] = m.artifact_type;
    if (m.annotations.is_object()) e["annotations"] = m.annotations;
    manifests_json[digest] = std::move(e);
  }
  return Json{{"tags", tags}, {"manifests", std::move(manifests_json)}, {"blobs", blobs}};
}

Result<RepoIndex> RepoIndex::from_json(const Json& j) {
  try {
    RepoIndex r;
    r.tags = j.at("tags").get<std::map<std::string, std::string>>();
    r.blobs = j.at("blobs").get<std::set<std::string>>();
    for (const auto& [digest, e] : j.at("manifests").items()) {
      ManifestEntry m;
      m.media_type = e.at("mediaType").get<std::string>();
      m.size = e.at("size").get<int64_t>();
      m.subject = e.value("subject", "");
      m.artifact_type = e.value("artifactType", "");
      if (e.contains("annotations")) m.annotations = e["annotations"];
      r.manifests.emplace(digest, std::move(m));
    }
    return r;
  } catch (const Json::exception& e) {
    return make_error(ErrorCode::kInternal, "malformed repository index: {}", e.what());
  }
}

Result<RepoIndex> load_repo_index(const std::filesystem::path& file) {
  auto text = TRY(read_file(file));
  auto j = TRY_CTX(parse_json(text), "{}", file.string());
  return with_context(RepoIndex::from_json(j), file.string());
}

Result<void> save_repo_index(const std::filesystem::path& file, const RepoIndex& index) {
  TRY(make_dirs(file.parent_path()));
  return write_file_atomic(file, dump_json(index.to_json()));
}

}  // namespace vireo::registry
