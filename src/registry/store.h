#pragma once
// Store: the registry's storage, an OCI-layout-like tree under one root:
//   <root>/oci-layout, <root>/blobs/<alg>/<hex>   content shared by every repository
//   <root>/repositories/<name>/_index.json      tags, manifests and linked blobs (RepoIndex)
//   <root>/uploads/<uuid>                        blob uploads in flight (UploadManager)
// A blob is visible in a repository only once linked there. Files are written to a temporary
// name, fsynced and renamed. A verified upload is made durable (fsync, rename, link) by a
// committer thread so that the client can go on with its next blob meanwhile; until then the
// blob is "pending": served from its upload file and counted as present, and a manifest that
// references it waits until it is durable before it is accepted. So no manifest ever refers to
// a blob that a crash could lose. Thread-safe: repository indexes behind one mutex, pending
// blobs behind another; garbage collection excludes commits with a reader-writer lock.
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "registry/digest.h"
#include "registry/manifest.h"
#include "registry/repo_index.h"

namespace vireo::registry {

namespace fs = std::filesystem;

struct ManifestRef {
  Digest digest;
  std::string media_type;
  int64_t size = 0;
};

struct GcStats {
  size_t blobs_removed = 0;
  uint64_t bytes_removed = 0;
};

// What Store::create does with upload files left by an earlier run.
enum class StaleUploads { kRemove, kKeep };

class Store {
 public:
  // kRemove when this process serves the root (uploads do not survive a restart: their hash
  // state lived in memory); kKeep for an offline tool next to a running server.
  static Result<std::unique_ptr<Store>> create(const fs::path& root,
                                               StaleUploads stale = StaleUploads::kRemove);

  ~Store();

  const fs::path& root() const { return root_; }
  fs::path blob_path(const Digest& d) const;
  // Opens a blob, durable or pending, for reading; BLOB_UNKNOWN when neither.
  RegResult<Fd> open_blob(const Digest& d);
  fs::path uploads_dir() const { return root_ / "uploads"; }
  bool blob_on_disk(const Digest& d) const;
  // Durable or pending in any repository.
  bool blob_known(const Digest& d);

  // Blobs of a repository. A manifest stored in the repository counts as one of its blobs.
  bool has_blob(const std::string& repo, const Digest& d);
  bool repo_exists(const std::string& repo);
  RegResult<void> link_blob(const std::string& repo, const Digest& d);
  RegResult<void> unlink_blob(const std::string& repo, const Digest& d);
  // Hands a verified upload file to the committer, which fsyncs it, moves it into the blob
  // store and links it into repo. The blob is pending (visible in repo) from now on.
  RegResult<void> commit_blob(const std::string& repo, const Digest& d, Fd file,
                              const fs::path& tmp);
  // Waits until no blob is pending.
  void flush();

  // Stores a verified manifest body under its digest, tagging it when tag is not empty.
  // Every referenced blob (or child manifest of an index) must be in repo.
  RegResult<void> put_manifest(const std::string& repo, const std::string& tag, const Digest& d,
                               std::string_view body, const Manifest& m);
  RegResult<ManifestRef> resolve_manifest(const std::string& repo, const std::string& reference);
  // A tag reference removes the tag; a digest removes the manifest and its tags.
  RegResult<void> delete_manifest(const std::string& repo, const std::string& reference);

  RegResult<std::vector<std::string>> tags(const std::string& repo);
  std::vector<std::string> repositories();
  // The referrers index (application/vnd.oci.image.index.v1+json) of subject in repo.
  Json referrers(const std::string& repo, const Digest& subject, const std::string& artifact_type);

  // Removes blobs no repository links and no upload is writing. Safe while serving.
  Result<GcStats> collect_garbage();
  // Held shared while a blob is committed (GC holds it exclusively).
  std::shared_mutex& gc_lock() { return gc_mu_; }

 private:
  explicit Store(fs::path root) : root_(std::move(root)) {}
  fs::path index_path(const std::string& repo) const;
  // The index of repo (loaded on first use); null when the repository does not exist and
  // create is false. Called with mu_ held.
  Result<RepoIndex*> index_locked(const std::string& repo, bool create);
  Result<void> save_locked(const std::string& repo);
  RegResult<void> check_references_locked(const RepoIndex& idx, const Manifest& m);
  RegResult<void> write_blob_atomic(const Digest& d, std::string_view body);
  RegResult<void> link_locked(const std::string& repo, const Digest& d);
  // Pending blobs: the committer thread, and what waits for it.
  struct Pending {
    fs::path tmp;
    Fd file;
    std::set<std::string> repos;
  };
  void commit_loop();
  bool make_durable(const std::string& key, Pending& p);
  bool pending_has(const std::string& repo, const std::string& key);
  void wait_durable(const Manifest& m);

  fs::path root_;
  std::mutex mu_;
  std::map<std::string, RepoIndex> repos_;
  std::shared_mutex gc_mu_;
  std::mutex pending_mu_;
  std::condition_variable pending_cv_;
  std::map<std::string, Pending> pending_;  // by digest
  std::deque<std::string> queue_;           // digests to commit, in order
  bool stopping_ = false;
  std::thread committer_;
};

// fsyncs a directory so that a rename in it is durable.
Result<void> sync_dir(const fs::path& dir);

}  // namespace vireo::registry
