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
  s->committer_ = std::thread([p = s.get()] { p->commit_loop(); });
  return s;
}

Store::~Store() {
  {
    std::lock_guard lock(pending_mu_);
    stopping_ = true;
  }
  pending_cv_.notify_all();
  if (committer_.joinable()) committer_.join();
}

RegResult<Fd> Store::open_blob(const Digest& d) {
  {
    std::lock_guard lock(pending_mu_);
    auto it = pending_.find(d.str());
    if (it != pending_.end()) {
      Fd fd(::open(it->second.tmp.c_str(), O_RDONLY | O_CLOEXEC));
      if (fd) return fd;  // else the committer just moved it: open the durable one
    }
  }
  Fd fd(::open(blob_path(d).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return reg_error(Code::kBlobUnknown, "blob unknown to registry", d.str());
  return fd;
}

bool Store::blob_known(const Digest& d) {
  {
    std::lock_guard lock(pending_mu_);
    if (pending_.contains(d.str())) return true;
  }
  return blob_on_disk(d);
}

bool Store::pending_has(const std::string& repo, const std::string& key) {
  std::lock_guard lock(pending_mu_);
  auto it = pending_.find(key);
  return it != pending_.end() && it->second.repos.contains(repo);
}

void Store::wait_durable(const Manifest& m) {
  std::unique_lock lock(pending_mu_);
  pending_cv_.wait(lock, [&] {
    for (const auto& b : m.blobs)
      if (pending_.contains(b.digest.str())) return false;
    return true;
  });
}

void Store::flush() {
  std::unique_lock lock(pending_mu_);
  pending_cv_.wait(lock, [&] { return pending_.empty(); });
}

void Store::commit_loop() {
  std::unique_lock lock(pending_mu_);
  for (;;) {
    pending_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, everything committed
    std::string key = queue_.front();
    queue_.pop_front();
    Pending& p = pending_.at(key);  // std::map: the reference survives other insertions
    lock.unlock();
    // GC waits until the blob is linked: renamed but unlinked it would look like garbage.
    std::shared_lock gc(gc_mu_);
    bool durable = make_durable(key, p);
    lock.lock();
    // Linked and no longer pending in one step: a push or DELETE of it in between would
    // otherwise change p.repos after the links were made, and be lost.
    Digest d = *parse_digest(key);
    for (const auto& repo : durable ? p.repos : std::set<std::string>{}) {
      std::lock_guard index_lock(mu_);
      if (auto l = link_locked(repo, d); !l)
        spdlog::error("link blob {} into {}: {}", key, repo, l.error().message());
    }
    pending_.erase(key);
    pending_cv_.notify_all();
  }
}

// fsync and rename into the blob store; false (the blob dropped, the repositories never see it,
// a manifest naming it fails) when that does not work.
bool Store::make_durable(const std::string& key, Pending& p) {
  Digest d = *parse_digest(key);
  fs::path dest = blob_path(d);
  Result<void> r;
  if (::fsync(p.file.get()) != 0) r = errno_error("fsync upload");
  p.file.reset();
  if (r && blob_on_disk(d)) {
    ::unlink(p.tmp.c_str());  // same content already stored by another push
  } else if (r) {
    if (::rename(p.tmp.c_str(), dest.c_str()) != 0) r = errno_error("rename to " + dest.string());
    if (r) r = sync_dir(dest.parent_path());
  }
  if (!r) {
    spdlog::error("commit blob {}: {}", key, r.error().message());
    ::unlink(p.tmp.c_str());
  }
  return bool(r);
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
  if (pending_has(repo, d.str())) return true;
  std::lock_guard lock(mu_);
  auto idx = index_locked(repo, false);
  if (!idx || !*idx) return false;
  std::string key = d.str();
  return (*idx)->blobs.contains(key) || (*idx)->manifests.contains(key);
}

RegResult<void> Store::link_locked(const std::string& repo, const Digest& d) {
  RepoIndex* idx = TRY(index_locked(repo, true));
  if (!idx->blobs.insert(d.str()).second) return {};
  return save_locked(repo);
}

RegResult<void> Store::link_blob(const std::string& repo, const Digest& d) {
  std::lock_guard pending_lock(pending_mu_);
  if (auto it = pending_.find(d.str()); it != pending_.end()) {
    it->second.repos.insert(repo);
    return {};
  }
  std::lock_guard lock(mu_);
  return link_locked(repo, d);
}

RegResult<void> Store::unlink_blob(const std::string& repo, const Digest& d) {
  {
    std::lock_guard pending_lock(pending_mu_);
    auto it = pending_.find(d.str());
    if (it != pending_.end() && it->second.repos.erase(repo) > 0) return {};
  }
  std::lock_guard lock(mu_);
  RepoIndex* idx = TRY(index_locked(repo, false));
  if (!idx || idx->blobs.erase(d.str()) == 0)
    return reg_error(Code::kBlobUnknown, "blob unknown to registry", d.str());
  return save_locked(repo);
}

RegResult<void> Store::commit_blob(const std::string& repo, const Digest& d, Fd file,
                                   const fs::path& tmp) {
  std::lock_guard lock(pending_mu_);
  std::string key = d.str();
  if (auto it = pending_.find(key); it != pending_.end()) {
    it->second.repos.insert(repo);  // the same content is already on its way
    ::unlink(tmp.c_str());
    return {};
  }
  pending_.emplace(key, Pending{tmp, std::move(file), {repo}});
  queue_.push_back(key);
  pending_cv_.notify_all();
  return {};
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
  wait_durable(m);
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
  flush();
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
