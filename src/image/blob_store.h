#pragma once
// BlobStore: the content-addressable blob directory of an image store, <root>/blobs/<alg>/<hex>.
// Every blob is verified on write: it is streamed into a temporary file in the same directory
// while hashed, fsynced, and renamed into place only when its digest is the expected one, so a
// blob path always holds exactly the content its name says (a mismatch leaves nothing). A blob
// already present is not written twice. Reads can be verified again (verify(), BlobReader).
// Concurrent writers of the same blob are safe (rename is atomic); the class holds no state.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "image/digest.h"

namespace vireo::image {

struct BlobInfo {
  Digest digest;
  uint64_t size = 0;
};

// Reads one blob and hashes what it reads: at EOF, read() fails when the content does not match
// the digest (a blob corrupted on disk), instead of returning 0.
class BlobReader {
 public:
  BlobReader(Fd fd, Digest digest, uint64_t size)
      : fd_(std::move(fd)), digest_(std::move(digest)), size_(size), hasher_(digest_.algorithm) {}
  // Bytes read into buf; 0 at a verified EOF.
  [[nodiscard]] Result<size_t> read(void* buf, size_t len);
  uint64_t size() const { return size_; }
  const Digest& digest() const { return digest_; }

 private:
  Fd fd_;
  Digest digest_;
  uint64_t size_;
  Hasher hasher_;
  bool verified_ = false;
};

class BlobStore {
 public:
  // Creates <root>/blobs/sha256 and sha512 as needed.
  [[nodiscard]] static Result<std::unique_ptr<BlobStore>> create(const std::filesystem::path& root);

  // Stores what fd yields up to EOF. With expected, the content must hash to it (otherwise
  // kInvalidArgument "digest mismatch" and nothing is stored); without, it is hashed with alg.
  [[nodiscard]] Result<BlobInfo> put_fd(int fd, const std::optional<Digest>& expected,
                                        DigestAlgorithm alg = DigestAlgorithm::kSha256);
  [[nodiscard]] Result<BlobInfo> put_file(const std::filesystem::path& file,
                                          const std::optional<Digest>& expected);
  [[nodiscard]] Result<BlobInfo> put(std::string_view data,
                                     const std::optional<Digest>& expected = std::nullopt,
                                     DigestAlgorithm alg = DigestAlgorithm::kSha256);

  // Moves a complete file on the store's file system into the store as blob d (made read-only,
  // fsynced, renamed). For a caller that hashed the content as it wrote it (a download) and
  // found d: the content is not read again.
  [[nodiscard]] Result<BlobInfo> adopt(const std::filesystem::path& file, const Digest& d);
  bool has(const Digest& d) const;
  std::filesystem::path path_of(const Digest& d) const;
  [[nodiscard]] Result<uint64_t> size_of(const Digest& d) const;
  [[nodiscard]] Result<BlobReader> open(const Digest& d) const;
  // Whole blob, verified; kTooLarge past max_size (manifests and configs are small).
  [[nodiscard]] Result<std::string> read(const Digest& d, size_t max_size = 16 << 20) const;
  // Re-hashes the stored blob: kInvalidArgument "blob ... is corrupt" on mismatch.
  [[nodiscard]] Result<void> verify(const Digest& d) const;
  // Removes the blob; returns its size (0 when it was not there).
  [[nodiscard]] Result<uint64_t> remove(const Digest& d);
  [[nodiscard]] Result<std::vector<Digest>> list() const;
  // Removes leftover temporary files of interrupted writes; returns bytes freed.
  uint64_t remove_temporaries();

 private:
  explicit BlobStore(std::filesystem::path root) : root_(std::move(root)) {}
  std::filesystem::path dir_of(DigestAlgorithm a) const;

  std::filesystem::path root_;  // <store root>/blobs
};

}  // namespace vireo::image
