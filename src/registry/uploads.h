#pragma once
// UploadManager: blob upload sessions. Each upload is a file <root>/uploads/<uuid> hashed as it
// is written (SHA-256; a SHA-512 digest is computed from the file at the end). A request writes
// an upload while holding Upload::mu; a body that ends early (client gone, timeout) is rolled
// back so the upload stays as it was before the request. Thread-safe.
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "registry/http_types.h"
#include "registry/store.h"

namespace vireo::registry {

struct Upload {
  std::string id;
  std::string repo;
  fs::path path;
  Fd fd;
  uint64_t size = 0;
  Hasher hasher{Algorithm::kSha256};
  std::timed_mutex mu;  // held by the request writing the upload
};

class UploadManager {
 public:
  explicit UploadManager(Store& store) : store_(store) {}

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

 private:
  void forget(const std::string& id);

  Store& store_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Upload>> uploads_;
};

}  // namespace vireo::registry
