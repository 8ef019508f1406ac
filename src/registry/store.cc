#include "registry/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "base/file.h"
#include "base/ids.h"
#include "base/log.h"

namespace vireo::registry {

Result<void> sync_dir(const fs::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return errno_error("open " + dir.string());
  if (::fsync(fd.get()) != 0) return errno_error("fsync " + dir.string());
  return {};
}

Result<std::unique_ptr<Store>> Store::create(const fs::path& root, StaleUploads stale) {
  std::unique_ptr<Store> s(new Store(root));
  for (const char* sub : {"blobs/sha256", "blobs/sha512", "repositories", "uploads"})
    TRY(make_dirs(root / sub));
  std::error_code ec;
  if (stale == StaleUploads::kRemove)
    for (const auto& e : fs::directory_iterator(root / "uploads", ec)) fs::remove_all(e.path(), ec);
  if (!fs::exists(root / "oci-layout"))
    TRY(write_file_atomic(root / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
  return s;
}

fs::path Store::blob_path(const Digest& d) const {
  return root_ / "blobs" / std::string(d.algorithm_name()) / d.hex;
}

fs::path Store::index_path(const std::string& repo) const {
  return root_ / "repositories" / repo / kIndexFile;
}

bool Store::blob_on_disk(const Digest& d) const {
  return ::access(blob_path(d).c_str(), F_OK) == 0;
}

Result<RepoIndex*> Store::index_locked(const std::string& repo, bool create) {
  if (auto it = repos_.find(repo); it != repos_.end()) return &it->second;
  fs::path file = index_path(repo);
  if (::access(file.c_str(), F_OK) == 0) {
    auto idx = TRY(load_repo_index(file));
    return &repos_.emplace(repo, std::move(idx)).first->second;
  }
  if (!create) return nullptr;
  return &repos_[repo];
}

Result<void> Store::save_locked(const std::string& repo) {
  return save_repo_index(index_path(repo), repos_.at(repo));
}

bool Store::repo_exists(const std::string& repo) {
  std::lock_guard lock(mu_);
  auto idx = index_locked(repo, false);
  return idx && *idx;
}

bool Store::has_blob(const std::string& repo, const Digest& d) {
  std::lock_guard lock(mu_);
  auto idx = index_locked(repo, false);
  if (!idx || !*idx) return false;
  std::string key = d.str();
  return (*idx)->blobs.contains(key) || (*idx)->manifests.contains(key);
}

RegResult<void> Store::link_blob(const std::string& repo, const Digest& d) {
  std::lock_guard lock(mu_);
  RepoIndex* idx = TRY(index_locked(repo, true));
  if (!idx->blobs.insert(d.str()).second) return {};
  return save_locked(repo);
}

RegResult<void> Store::unlink_blob(const std::string& repo, const Digest& d) {
  std::lock_guard lock(mu_);
  RepoIndex* idx = TRY(index_locked(repo, false));
  if (!idx || idx->blobs.erase(d.str()) == 0)
    return reg_error(Code::kBlobUnknown, "blob unknown to registry", d.str());
  return save_locked(repo);
}

RegResult<void> Store::commit_blob(const std::string& repo, const Digest& d, Fd file,
                                   const fs::path& tmp) {
  std::shared_lock gc(gc_mu_);
  if (::fsync(file.get()) != 0) return errno_error("fsync upload");
  file.reset();
  fs::path dest = blob_path(d);
  if (blob_on_disk(d)) {
    ::unlink(tmp.c_str());  // same content already stored by another push
  } else {
    if (::rename(tmp.c_str(), dest.c_str()) != 0)
      return errno_error(fmt::format("rename upload to {}", dest.string()));
    TRY(sync_dir(dest.parent_path()));
  }
  return link_blob(repo, d);
}

RegResult<void> Store::write_blob_atomic(const Digest& d, std::string_view body) {
  if (blob_on_disk(d)) return {};
  TRY(write_file_atomic(blob_path(d), body));
  TRY(sync_dir(blob_path(d).parent_path()));
  return {};
}

RegResult<void> Store::check_references_locked(const RepoIndex& idx, const Manifest& m) {
  for (const auto& b : m.blobs) {
    if (b.external) continue;
    std::string key = b.digest.str();
    if (!idx.blobs.contains(key) && !idx.manifests.contains(key))
      return reg_error(Code::kManifestBlobUnknown,
                       "manifest references a blob unknown to the "
                       "repository",
                       key);
    struct stat st;
    if (::stat(blob_path(b.digest).c_str(), &st) == 0 && st.st_size != b.size)
      return reg_error(Code::kManifestInvalid, "manifest invalid",
                       fmt::format("size of {} is {}, not {}", key, st.st_size, b.size));
  }
  for (const auto& c : m.children)
    if (!idx.manifests.contains(c.digest.str()))
      return reg_error(Code::kManifestBlobUnknown,
                       "index references a manifest unknown to the "
                       "repository",
                       c.digest.str());
  return {};
}

RegResult<void> Store::put_manifest(const std::string& repo, const std::string& tag,
                                    const Digest& d, std::string_view body, const Manifest& m) {
  std::shared_lock gc(gc_mu_);
  std::lock_guard lock(mu_);
  RepoIndex* idx = TRY(index_locked(repo, true));
  auto refs = check_references_locked(*idx, m);
  if (!refs) {
    if (idx->tags.empty() && idx->manifests.empty() && idx->blobs.empty()) repos_.erase(repo);
    return std::unexpected(refs.error());
  }
  TRY(write_blob_atomic(d, body));
  ManifestEntry e{m.media_type, int64_t(body.size()),
                  m.subject ? m.subject->digest.str() : std::string(), m.artifact_type,
                  m.annotations};
  idx->manifests[d.str()] = std::move(e);
  if (!tag.empty()) idx->tags[tag] = d.str();
  return save_locked(repo);
}

RegResult<ManifestRef> Store::resolve_manifest(const std::string& repo,
                                               const std::string& reference) {
  std::lock_guard lock(mu_);
  RepoIndex* idx = TRY(index_locked(repo, false));
  if (!idx) return reg_error(Code::kNameUnknown, "repository name not known to registry", repo);
  std::string key = reference;
  if (!looks_like_digest(reference)) {
    auto t = idx->tags.find(reference);
    if (t == idx->tags.end())
      return reg_error(Code::kManifestUnknown, "manifest unknown", reference);
    key = t->second;
  }
  auto it = idx->manifests.find(key);
  if (it == idx->manifests.end())
    return reg_error(Code::kManifestUnknown, "manifest unknown", reference);
  Digest d = TRY(parse_digest(key));
  return ManifestRef{d, it->second.media_type, it->second.size};
}

RegResult<void> Store::delete_manifest(const std::string& repo, const std::string& reference) {
  std::lock_guard lock(mu_);
  RepoIndex* idx = TRY(index_locked(repo, false));
  if (!idx) return reg_error(Code::kNameUnknown, "repository name not known to registry", repo);
  if (!looks_like_digest(reference)) {
    if (idx->tags.erase(reference) == 0)
      return reg_error(Code::kManifestUnknown, "manifest unknown", reference);
    return save_locked(repo);
  }
  if (idx->manifests.erase(reference) == 0)
    return reg_error(Code::kManifestUnknown, "manifest unknown", reference);
  std::erase_if(idx->tags, [&](const auto& kv) { return kv.second == reference; });
  return save_locked(repo);
}

RegResult<std::vector<std::string>> Store::tags(const std::string& repo) {
  std::lock_guard lock(mu_);
  RepoIndex* idx = TRY(index_locked(repo, false));
  if (!idx) return reg_error(Code::kNameUnknown, "repository name not known to registry", repo);
  std::vector<std::string> out;
  for (const auto& [tag, _] : idx->tags) out.push_back(tag);
  return out;
}

std::vector<std::string> Store::repositories() {
  std::vector<std::string> out;
  fs::path base = root_ / "repositories";
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(base, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->path().filename() == kIndexFile)
      out.push_back(it->path().parent_path().lexically_relative(base).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

Json Store::referrers(const std::string& repo, const Digest& subject,
                      const std::string& artifact_type) {
  Json list = Json::array();
  std::lock_guard lock(mu_);
  auto idx = index_locked(repo, false);
  std::string key = subject.str();
  if (idx && *idx) {
    for (const auto& [digest, m] : (*idx)->manifests) {
      if (m.subject != key) continue;
      if (!artifact_type.empty() && m.artifact_type != artifact_type) continue;
      Descriptor d{m.media_type, *parse_digest(digest), m.size, m.artifact_type, m.annotations};
      list.push_back(descriptor_json(d));
    }
  }
  return Json{{"schemaVersion", 2}, {"mediaType", kOciIndex}, {"manifests", std::move(list)}};
}

Result<GcStats> Store::collect_garbage() {
  std::unique_lock gc(gc_mu_);
  std::set<std::string> live;
  for (const auto& repo : repositories()) {
    std::lock_guard lock(mu_);
    RepoIndex* idx = TRY(index_locked(repo, false));
    if (!idx) continue;
    live.insert(idx->blobs.begin(), idx->blobs.end());
    for (const auto& [d, _] : idx->manifests) live.insert(d);
  }
  GcStats stats;
  for (const char* alg : {"sha256", "sha512"}) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root_ / "blobs" / alg, ec)) {
      std::string key = std::string(alg) + ":" + e.path().filename().string();
      if (live.contains(key)) continue;
      uint64_t size = e.file_size(ec);
      if (::unlink(e.path().c_str()) != 0) continue;
      stats.blobs_removed++, stats.bytes_removed += ec ? 0 : size;
    }
  }
  spdlog::info("gc: removed {} blobs, {} bytes", stats.blobs_removed, stats.bytes_removed);
  return stats;
}

}  // namespace vireo::registry
