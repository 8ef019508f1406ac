#include "registry/uploads.h"

#include <fcntl.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "base/ids.h"
#include "base/log.h"

namespace vireo::registry {

namespace {

constexpr size_t kChunk = 1 << 20;
// Writeback starts every this many bytes, so the fsync at commit finds little left to write and
// the disk works while the network does.
constexpr uint64_t kWritebackStep = 2 << 20;

Result<void> write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno_error("write upload");
    p += w, n -= size_t(w);
  }
  return {};
}

}  // namespace

RegResult<std::shared_ptr<Upload>> UploadManager::start(const std::string& repo) {
  if (count() >= max_uploads_)
    return reg_error(Code::kTooManyRequests, "too many uploads in progress");
  auto up = std::make_shared<Upload>();
  up->id = random_uuid();
  up->repo = repo;
  up->path = store_.uploads_dir() / up->id;
  up->fd.reset(::open(up->path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!up->fd) return errno_error("create upload " + up->path.string());
  std::lock_guard lock(mu_);
  uploads_[up->id] = up;
  return up;
}

RegResult<std::shared_ptr<Upload>> UploadManager::find(const std::string& repo,
                                                       const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = uploads_.find(id);
  if (it == uploads_.end() || it->second->repo != repo)
    return reg_error(Code::kBlobUploadUnknown, "blob upload unknown to registry", id);
  it->second->touch();
  return it->second;
}

RegResult<void> UploadManager::append(Upload& up, const BodyReader& body,
                                      std::optional<uint64_t> length) {
  const uint64_t start_size = up.size;
  const Hasher start_hash = up.hasher;
  std::unique_ptr<char[]> buf(new char[kChunk]);  // not zeroed: a 1 MiB memset per request
  uint64_t flushed = start_size;
  auto rollback = [&](RegistryError e) -> RegResult<void> {
    if (::ftruncate(up.fd.get(), off_t(start_size)) != 0) spdlog::warn("truncate upload failed");
    ::lseek(up.fd.get(), off_t(start_size), SEEK_SET);
    up.size = start_size;
    up.hasher = start_hash;
    return std::unexpected(std::move(e));
  };
  ::lseek(up.fd.get(), off_t(up.size), SEEK_SET);
  for (;;) {
    auto n = body(buf.get(), kChunk);
    if (!n) return rollback(n.error());
    if (*n == 0) break;
    if (auto w = write_all(up.fd.get(), buf.get(), *n); !w) return rollback(w.error());
    up.hasher.update(buf.get(), *n);
    up.size += *n;
    if (up.size - flushed >= kWritebackStep) {
      up.touch();
      ::sync_file_range(up.fd.get(), off_t(flushed), off_t(up.size - flushed),
                        SYNC_FILE_RANGE_WRITE);
      flushed = up.size;
    }
  }
  if (length && up.size - start_size != *length)
    return rollback(RegistryError(Code::kBlobUploadInvalid,
                                  "body length does not match "
                                  "Content-Range"));
  return {};
}

RegResult<void> UploadManager::finish(const std::shared_ptr<Upload>& up, const Digest& expected) {
  forget(up->id);
  Digest actual = up->hasher.digest();
  if (expected.algorithm != Algorithm::kSha256) {
    auto d = digest_of_file(up->fd.get(), expected.algorithm);
    if (!d) {
      ::unlink(up->path.c_str());
      return std::unexpected(RegistryError(d.error()));
    }
    actual = *d;
  }
  if (actual != expected) {
    ::unlink(up->path.c_str());
    return reg_error(Code::kDigestInvalid, "provided digest did not match uploaded content",
                     fmt::format("expected {}, content is {}", expected.str(), actual.str()));
  }
  auto r = store_.commit_blob(up->repo, expected, std::move(up->fd), up->path);
  if (!r) ::unlink(up->path.c_str());
  return r;
}

void UploadManager::forget(const std::string& id) {
  std::lock_guard lock(mu_);
  uploads_.erase(id);
}

void UploadManager::cancel(const std::string& id) {
  std::shared_ptr<Upload> up;
  {
    std::lock_guard lock(mu_);
    auto it = uploads_.find(id);
    if (it == uploads_.end()) return;
    up = it->second;
    uploads_.erase(it);
  }
  ::unlink(up->path.c_str());
}

size_t UploadManager::expire(std::chrono::seconds idle) {
  auto cutoff = (Upload::Clock::now() - idle).time_since_epoch().count();
  std::vector<std::string> stale;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, up] : uploads_)
      if (up->last_used < cutoff) stale.push_back(id);
  }
  for (const auto& id : stale) cancel(id);
  if (!stale.empty()) spdlog::info("uploads: expired {} idle uploads", stale.size());
  return stale.size();
}

size_t UploadManager::count() {
  std::lock_guard lock(mu_);
  return uploads_.size();
}

}  // namespace vireo::registry
