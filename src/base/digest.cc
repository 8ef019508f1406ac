#include "base/digest.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <cstdlib>
#include <utility>
#include <vector>

#include "base/ids.h"

namespace vireo {

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
  return std::string(algorithm_name()) + ":" + hex;
}

Hasher::Hasher(DigestAlgorithm algorithm) : algorithm_(algorithm), ctx_(EVP_MD_CTX_new()) {
  const EVP_MD* md = algorithm == DigestAlgorithm::kSha256 ? EVP_sha256() : EVP_sha512();
  if (!ctx_ || EVP_DigestInit_ex(ctx_, md, nullptr) != 1) std::abort();
}

Hasher::~Hasher() {
  EVP_MD_CTX_free(ctx_);
}

Hasher::Hasher(const Hasher& other) : algorithm_(other.algorithm_), ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_MD_CTX_copy_ex(ctx_, other.ctx_) != 1) std::abort();
}

Hasher& Hasher::operator=(const Hasher& other) {
  if (this == &other) return *this;
  algorithm_ = other.algorithm_;
  if (EVP_MD_CTX_copy_ex(ctx_, other.ctx_) != 1) std::abort();
  return *this;
}

Hasher::Hasher(Hasher&& other) noexcept
    : algorithm_(other.algorithm_), ctx_(std::exchange(other.ctx_, nullptr)) {}

Hasher& Hasher::operator=(Hasher&& other) noexcept {
  std::swap(algorithm_, other.algorithm_);
  std::swap(ctx_, other.ctx_);
  return *this;
}

void Hasher::update(const void* data, size_t size) {
  if (size > 0 && EVP_DigestUpdate(ctx_, data, size) != 1) std::abort();
}

Digest Hasher::digest() const {
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!copy || EVP_MD_CTX_copy_ex(copy, ctx_) != 1 || EVP_DigestFinal_ex(copy, out, &len) != 1)
    std::abort();
  EVP_MD_CTX_free(copy);
  return Digest{algorithm_, to_hex(out, len)};
}

Digest digest_of(std::string_view data, DigestAlgorithm algorithm) {
  Hasher h(algorithm);
  h.update(data);
  return h.digest();
}

Result<Digest> digest_of_file(int fd, DigestAlgorithm algorithm) {
  Hasher h(algorithm);
  std::vector<char> buf(1 << 20);
  off_t off = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buf.data(), buf.size(), off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read for digest");
    if (n == 0) break;
    h.update(buf.data(), size_t(n));
    off += n;
  }
  return h.digest();
}

}  // namespace vireo
