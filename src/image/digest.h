#pragma once
// Content digests of the OCI image spec ("sha256:<64 hex>", "sha512:<128 hex>") and a streaming
// hasher over OpenSSL EVP. A Digest is always valid once parsed: lowercase hex of the right
// length, so its hex part is safe as a path component.
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vireo::image {

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

// Incremental hash: update() with the bytes, then finish() once.
class Hasher {
 public:
  explicit Hasher(DigestAlgorithm algorithm = DigestAlgorithm::kSha256);
  ~Hasher();
  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;
  void update(const void* data, size_t size);
  void update(std::string_view data) { update(data.data(), data.size()); }
  Digest finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

Digest digest_of(std::string_view data, DigestAlgorithm algorithm = DigestAlgorithm::kSha256);

}  // namespace vireo::image
