#include "image/blob_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"

namespace vireo::image {

namespace fs = std::filesystem;

namespace {

constexpr size_t kChunk = 1 << 16;

Result<size_t> read_some(int fd, void* buf, size_t len, const std::string& what) {
  for (;;) {
    ssize_t n = ::read(fd, buf, len);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return errno_error(fmt::format("read {}", what));
  }
}

Result<void> write_all(int fd, const char* p, size_t len, const std::string& what) {
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(fmt::format("write {}", what));
    p += n;
    len -= static_cast<size_t>(n);
  }
  return {};
}

// Copies fd to out while hashing; returns the digest and the size.
Result<BlobInfo> copy_hashing(int fd, int out, DigestAlgorithm alg, const std::string& what) {
  Hasher hasher(alg);
  std::vector<char> buf(kChunk);
  uint64_t size = 0;
  for (;;) {
    size_t n = TRY(read_some(fd, buf.data(), buf.size(), "blob source"));
    if (n == 0) break;
    hasher.update(buf.data(), n);
    TRY(write_all(out, buf.data(), n, what));
    size += n;
  }
  return BlobInfo{hasher.digest(), size};
}

}  // namespace

Result<std::unique_ptr<BlobStore>> BlobStore::create(const fs::path& root) {
  auto store = std::unique_ptr<BlobStore>(new BlobStore(root / "blobs"));
  TRY(make_dirs(store->dir_of(DigestAlgorithm::kSha256), 0700));
  TRY(make_dirs(store->dir_of(DigestAlgorithm::kSha512), 0700));
  return store;
}

fs::path BlobStore::dir_of(DigestAlgorithm a) const {
  return root_ / (a == DigestAlgorithm::kSha256 ? "sha256" : "sha512");
}

fs::path BlobStore::path_of(const Digest& d) const {
  return dir_of(d.algorithm) / d.hex;
}

bool BlobStore::has(const Digest& d) const {
  struct stat st;
  return ::lstat(path_of(d).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Result<uint64_t> BlobStore::size_of(const Digest& d) const {
  struct stat st;
  if (::lstat(path_of(d).c_str(), &st) != 0) return errno_error(fmt::format("blob {}", d.str()));
  return static_cast<uint64_t>(st.st_size);
}

Result<BlobInfo> BlobStore::put_fd(int fd, const std::optional<Digest>& expected,
                                   DigestAlgorithm alg) {
  if (expected) alg = expected->algorithm;
  fs::path dir = dir_of(alg);
  std::string tmp = (dir / ".tmp-XXXXXX").string();
  Fd out(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!out) return errno_error(fmt::format("create temporary blob in {}", dir.string()));
  auto fail = [&](Error e) -> Result<BlobInfo> {
    ::unlink(tmp.c_str());
    return std::unexpected(std::move(e));
  };
  auto info = copy_hashing(fd, out.get(), alg, tmp);
  if (!info) return fail(info.error());
  if (expected && info->digest != *expected)
    return fail(Error(ErrorCode::kInvalidArgument,
                      fmt::format("digest mismatch: expected {}, content is {}", expected->str(),
                                  info->digest.str())));
  if (::fchmod(out.get(), 0444) != 0 || ::fsync(out.get()) != 0)
    return fail(Error::from_errno(errno, "fsync " + tmp));
  out.reset();
  if (has(info->digest)) {
    ::unlink(tmp.c_str());
    return *info;
  }
  if (::rename(tmp.c_str(), path_of(info->digest).c_str()) != 0)
    return fail(Error::from_errno(errno, "store blob " + info->digest.str()));
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd) ::fsync(dfd.get());
  return *info;
}

Result<BlobInfo> BlobStore::adopt(const fs::path& file, const Digest& d) {
  Fd fd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("open {}", file.string()));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || ::fchmod(fd.get(), 0444) != 0 || ::fsync(fd.get()) != 0)
    return errno_error(fmt::format("sync {}", file.string()));
  if (::rename(file.c_str(), path_of(d).c_str()) != 0)
    return errno_error(fmt::format("store blob {}", d.str()));
  Fd dfd(::open(dir_of(d.algorithm).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd) ::fsync(dfd.get());
  return BlobInfo{d, static_cast<uint64_t>(st.st_size)};
}

Result<BlobInfo> BlobStore::put_file(const fs::path& file, const std::optional<Digest>& expected) {
  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("open {}", file.string()));
  return with_context(put_fd(fd.get(), expected), file.string());
}

Result<BlobInfo> BlobStore::put(std::string_view data, const std::optional<Digest>& expected,
                                DigestAlgorithm alg) {
  Fd mem(::memfd_create("blob", MFD_CLOEXEC));
  if (!mem) return errno_error("memfd_create");
  TRY(write_all(mem.get(), data.data(), data.size(), "memfd"));
  if (::lseek(mem.get(), 0, SEEK_SET) != 0) return errno_error("lseek memfd");
  return put_fd(mem.get(), expected, alg);
}

Result<BlobReader> BlobStore::open(const Digest& d) const {
  Fd fd(::open(path_of(d).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("blob {}", d.str()));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return errno_error(fmt::format("stat blob {}", d.str()));
  return BlobReader(std::move(fd), d, static_cast<uint64_t>(st.st_size));
}

Result<size_t> BlobReader::read(void* buf, size_t len) {
  size_t n = TRY(read_some(fd_.get(), buf, len, "blob " + digest_.str()));
  if (n > 0) {
    hasher_.update(buf, n);
    return n;
  }
  if (!verified_ && len > 0) {
    if (hasher_.digest() != digest_)
      return make_error(ErrorCode::kInvalidArgument, "blob {} is corrupt: content does not match",
                        digest_.str());
    verified_ = true;
  }
  return 0;
}

Result<std::string> BlobStore::read(const Digest& d, size_t max_size) const {
  auto reader = TRY(open(d));
  if (reader.size() > max_size)
    return make_error(ErrorCode::kTooLarge, "blob {} is {} bytes, more than {}", d.str(),
                      reader.size(), max_size);
  std::string out;
  char buf[kChunk];
  for (;;) {
    size_t n = TRY(reader.read(buf, sizeof buf));
    if (n == 0) break;
    out.append(buf, n);
    if (out.size() > max_size) return make_error(ErrorCode::kTooLarge, "blob {} grew", d.str());
  }
  return out;
}

Result<void> BlobStore::verify(const Digest& d) const {
  auto reader = TRY(open(d));
  std::vector<char> buf(kChunk);
  while (TRY(reader.read(buf.data(), buf.size())) > 0) {
  }
  return {};
}

Result<uint64_t> BlobStore::remove(const Digest& d) {
  struct stat st;
  if (::lstat(path_of(d).c_str(), &st) != 0) {
    if (errno == ENOENT) return 0;
    return errno_error(fmt::format("blob {}", d.str()));
  }
  if (::unlink(path_of(d).c_str()) != 0 && errno != ENOENT)
    return errno_error(fmt::format("remove blob {}", d.str()));
  return static_cast<uint64_t>(st.st_size);
}

Result<std::vector<Digest>> BlobStore::list() const {
  std::vector<Digest> out;
  for (auto alg : {DigestAlgorithm::kSha256, DigestAlgorithm::kSha512}) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_of(alg), ec)) {
      Digest d{alg, e.path().filename().string()};
      if (Digest::parse(d.str())) out.push_back(std::move(d));
    }
    if (ec) return make_error(ErrorCode::kIo, "list {}: {}", dir_of(alg).string(), ec.message());
  }
  return out;
}

uint64_t BlobStore::remove_temporaries() {
  uint64_t freed = 0;
  for (auto alg : {DigestAlgorithm::kSha256, DigestAlgorithm::kSha512}) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_of(alg), ec)) {
      if (!e.path().filename().string().starts_with(".tmp-")) continue;
      freed += e.file_size(ec);
      fs::remove(e.path(), ec);
    }
  }
  return freed;
}

}  // namespace vireo::image
