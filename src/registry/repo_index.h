#pragma once
// RepoIndex: what one repository holds — tags, manifests (with what the referrers API needs)
// and the shared blobs linked into it. Persisted as <root>/repositories/<name>/_index.json
// ("_index.json" cannot be a name component, so nested repositories never collide).
// A plain value; the Store guards it.
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "base/json.h"
#include "base/result.h"

namespace vireo::registry {

struct ManifestEntry {
  std::string media_type;
  int64_t size = 0;
  std::string subject;  // digest of the subject, empty when none
  std::string artifact_type;
  Json annotations;  // null when absent
};

struct RepoIndex {
  std::map<std::string, std::string> tags;  // tag → manifest digest
  std::map<std::string, ManifestEntry> manifests;
  std::set<std::string> blobs;

  Json to_json() const;
  static Result<RepoIndex> from_json(const Json& j);
};

inline constexpr const char* kIndexFile = "_index.json";

Result<RepoIndex> load_repo_index(const std::filesystem::path& file);
Result<void> save_repo_index(const std::filesystem::path& file, const RepoIndex& index);

}  // namespace vireo::registry
