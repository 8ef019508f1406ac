#include "image/digest.h"

#include <openssl/evp.h>

#include <cstdlib>

namespace vireo::image {

namespace {

size_t hex_length(DigestAlgorithm a) {
  return a == DigestAlgorithm::kSha256 ? 64 : 128;
}

bool is_lower_hex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

Result<Digest> Digest::parse(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos)
    return make_error(ErrorCode::kInvalidArgument, "invalid digest '{}': expected ALG:HEX",
                      text.substr(0, 200));
  std::string_view alg = text.substr(0, colon), hex = text.substr(colon + 1);
  Digest d;
  if (alg == "sha256")
    d.algorithm = DigestAlgorithm::kSha256;
  else if (alg == "sha512")
    d.algorithm = DigestAlgorithm::kSha512;
  else
    return make_error(ErrorCode::kInvalidArgument,
                      "invalid digest '{}': algorithm must be sha256 or sha512",
                      text.substr(0, 200));
  if (hex.size() != hex_length(d.algorithm) || !is_lower_hex(hex))
    return make_error(ErrorCode::kInvalidArgument,
                      "invalid digest '{}': expected {} lowercase hex digits after '{}:'",
                      text.substr(0, 200), hex_length(d.algorithm), alg);
  d.hex = hex;
  return d;
}

std::string_view Digest::algorithm_name() const {
  return algorithm == DigestAlgorithm::kSha256 ? "sha256" : "sha512";
}

std::string Digest::str() const {
  return fmt::format("{}:{}", algorithm_name(), hex);
}

struct Hasher::Impl {
  EVP_MD_CTX* ctx = nullptr;
  DigestAlgorithm algorithm;
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

Hasher::Hasher(DigestAlgorithm algorithm) : impl_(std::make_unique<Impl>()) {
  impl_->algorithm = algorithm;
  impl_->ctx = EVP_MD_CTX_new();
  const EVP_MD* md = algorithm == DigestAlgorithm::kSha256 ? EVP_sha256() : EVP_sha512();
  if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx, md, nullptr) != 1) std::abort();
}

Hasher::~Hasher() = default;
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;

void Hasher::update(const void* data, size_t size) {
  if (size > 0 && EVP_DigestUpdate(impl_->ctx, data, size) != 1) std::abort();
}

Digest Hasher::finish() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(impl_->ctx, md, &len) != 1) std::abort();
  static const char kHex[] = "0123456789abcdef";
  Digest d;
  d.algorithm = impl_->algorithm;
  for (unsigned i = 0; i < len; ++i) {
    d.hex.push_back(kHex[md[i] >> 4]);
    d.hex.push_back(kHex[md[i] & 15]);
  }
  return d;
}

Digest digest_of(std::string_view data, DigestAlgorithm algorithm) {
  Hasher h(algorithm);
  h.update(data);
  return h.finish();
}

}  // namespace vireo::image
