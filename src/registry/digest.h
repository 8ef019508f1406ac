#pragma once
// Content digests ("sha256:<64 hex>", "sha512:<128 hex>") and an incremental hasher over
// OpenSSL EVP. A Hasher is owned by one upload and used by one thread at a time.
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "registry/errors.h"

struct evp_md_ctx_st;

namespace vireo::registry {

enum class Algorithm { kSha256, kSha512 };

struct Digest {
  Algorithm algorithm = Algorithm::kSha256;
  std::string hex;  // lowercase, 64 or 128 characters

  std::string_view algorithm_name() const;
  std::string str() const;
  bool operator==(const Digest&) const = default;
  auto operator<=>(const Digest& o) const { return str() <=> o.str(); }
};

// Validates "alg:hex"; DIGEST_INVALID (or UNSUPPORTED for an unknown algorithm) names the fault.
RegResult<Digest> parse_digest(std::string_view text);
// True when text has the shape of a digest (algorithm ":" encoded) rather than of a tag.
bool looks_like_digest(std::string_view text);

class Hasher {
 public:
  explicit Hasher(Algorithm algorithm);
  ~Hasher();
  Hasher(const Hasher& other);
  Hasher& operator=(const Hasher& other);

  void update(const void* data, size_t size);
  // The digest of everything hashed so far; the hasher can go on afterwards.
  Digest digest() const;
  Algorithm algorithm() const { return algorithm_; }

 private:
  Algorithm algorithm_;
  evp_md_ctx_st* ctx_ = nullptr;
};

Digest digest_of(std::string_view data, Algorithm algorithm = Algorithm::kSha256);
// Hashes a whole file (used when the upload was hashed with another algorithm).
Result<Digest> digest_of_file(int fd, Algorithm algorithm);

}  // namespace vireo::registry
