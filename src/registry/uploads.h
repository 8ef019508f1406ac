#pragma once
// UploadManager: blob upload sessions. Each upload is a file <root>/uploads/<uuid> hashed as it
// is written (SHA-256; a SHA-512 digest is computed from the file at the end). A request writes
// an upload while holding Upload::mu; a body that ends early (client gone, timeout) is rolled
// back so the upload stays as it was before the request. Thread-safe.
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "registry/http_types.h"
#include "registry/store.h"

namespace vireo::registry {

struct Upload {
  using Clock = std::chrono::steady_clock;
  std::string id;
  std::string repo;
  fs::path path;
  Fd fd;
  uint64_t size = 0;
  Hasher hasher{Algorithm::kSha256};
  std::timed_mutex mu;  // held by the request writing the upload
  std::atomic<Clock::rep> last_used{Clock::now().time_since_epoch().count()};
  void touch() { last_used = Clock::now().time_since_epoch().count(); }
};

class UploadManager {
 public:
  // At most max_uploads sessions at a time (each holds a file descriptor): TOOMANYREQUESTS.
  explicit UploadManager(Store& store, size_t max_uploads = 4096)
      : store_(store), max_uploads_(max_uploads) {}

  RegResult<std::shared_ptr<Upload>> start(const std::string& repo);
  // BLOB_UPLOAD_UNKNOWN unless id is an upload of repo.
  RegResult<std::shared_ptr<Upload>> find(const std::string& repo, const std::string& id);
  // Appends the request body; with length set, the body must be exactly that long.
  // The caller holds up.mu.
  RegResult<void> append(Upload& up, const BodyReader& body, std::optional<uint64_t> length);
  // Verifies the content against expected and commits it as a blob of the upload's repository.
  // The upload ends either way (DIGEST_INVALID stores nothing). The caller holds up->mu.
  RegResult<void> finish(const std::shared_ptr<Upload>& up, const Digest& expected);
  void cancel(const std::string& id);
  size_t count();
  // Cancels the uploads no request touched for idle (abandoned by their clients); the count.
  size_t expire(std::chrono::seconds idle);

 private:
  void forget(const std::string& id);

  Store& store_;
  size_t max_uploads_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Upload>> uploads_;
};

}  // namespace vireo::registry
