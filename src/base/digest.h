#pragma once
// Content digests ("sha256:<64 hex>", "sha512:<128 hex>", as OCI images and registries name
// blobs) and an incremental hasher over OpenSSL EVP. A parsed Digest is always valid: lowercase
// hex of the right length, so its hex part is safe as a path component. A Hasher is used by one
// thread at a time.
#include <compare>
#include <string>
#include <string_view>

#include "base/result.h"

struct evp_md_ctx_st;

namespace vireo {

enum class DigestAlgorithm { kSha256, kSha512 };

struct Digest {
  DigestAlgorithm algorithm = DigestAlgorithm::kSha256;
  std::string hex;

  // "sha256:..." — parses and validates text from outside (manifests, references, paths).
  [[nodiscard]] static Result<Digest> parse(std::string_view text);
  std::string_view algorithm_name() const;
  std::string str() const;
  bool operator==(const Digest&) const = default;
  auto operator<=>(const Digest&) const = default;
};

class Hasher {
 public:
  explicit Hasher(DigestAlgorithm algorithm = DigestAlgorithm::kSha256);
  ~Hasher();
  Hasher(const Hasher& other);
  Hasher& operator=(const Hasher& other);
  Hasher(Hasher&& other) noexcept;
  Hasher& operator=(Hasher&& other) noexcept;

  void update(const void* data, size_t size);
  void update(std::string_view data) { update(data.data(), data.size()); }
  // The digest of everything hashed so far; hashing may go on afterwards.
  Digest digest() const;
  DigestAlgorithm algorithm() const { return algorithm_; }

 private:
  DigestAlgorithm algorithm_;
  evp_md_ctx_st* ctx_ = nullptr;
};

Digest digest_of(std::string_view data, DigestAlgorithm algorithm = DigestAlgorithm::kSha256);
// Hashes a whole file from offset 0 (pread: the fd's offset is left alone).
[[nodiscard]] Result<Digest> digest_of_file(int fd,
                                            DigestAlgorithm algorithm = DigestAlgorithm::kSha256);

}  // namespace vireo
