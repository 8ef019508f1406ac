#include "registry/digest.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <vector>

#include "base/ids.h"

namespace vireo::registry {

namespace {

const EVP_MD* md_of(Algorithm a) {
  return a == Algorithm::kSha256 ? EVP_sha256() : EVP_sha512();
}

bool is_lower_hex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// The spec's algorithm component: [a-z0-9]+([+._-][a-z0-9]+)*
bool valid_algorithm_component(std::string_view s) {
  if (s.empty()) return false;
  bool prev_sep = true;
  for (char c : s) {
    bool sep = c == '+' || c == '.' || c == '_' || c == '-';
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!sep && !alnum) return false;
    if (sep && prev_sep) return false;
    prev_sep = sep;
  }
  return !prev_sep;
}

}  // namespace

std::string_view Digest::algorithm_name() const {
  return algorithm == Algorithm::kSha256 ? "sha256" : "sha512";
}

std::string Digest::str() const {
  return std::string(algorithm_name()) + ":" + hex;
}

bool looks_like_digest(std::string_view text) {
  return text.find(':') != std::string_view::npos;
}

RegResult<Digest> parse_digest(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos || text.size() > 256)
    return reg_error(Code::kDigestInvalid, "invalid digest", std::string(text.substr(0, 256)));
  std::string_view alg = text.substr(0, colon), hex = text.substr(colon + 1);
  if (!valid_algorithm_component(alg))
    return reg_error(Code::kDigestInvalid, "invalid digest algorithm", std::string(text));
  Digest d;
  size_t want = 0;
  if (alg == "sha256") {
    d.algorithm = Algorithm::kSha256, want = 64;
  } else if (alg == "sha512") {
    d.algorithm = Algorithm::kSha512, want = 128;
  } else {
    return reg_error(Code::kUnsupported, "unsupported digest algorithm", std::string(alg));
  }
  if (hex.size() != want || !is_lower_hex(hex))
    return reg_error(Code::kDigestInvalid,
                     fmt::format("{} digest must be {} lowercase hex digits", alg, want),
                     std::string(text));
  d.hex = std::string(hex);
  return d;
}

Hasher::Hasher(Algorithm algorithm) : algorithm_(algorithm), ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(ctx_, md_of(algorithm), nullptr) != 1) std::abort();
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

Digest digest_of(std::string_view data, Algorithm algorithm) {
  Hasher h(algorithm);
  h.update(data.data(), data.size());
  return h.digest();
}

Result<Digest> digest_of_file(int fd, Algorithm algorithm) {
  Hasher h(algorithm);
  std::vector<char> buf(1 << 20);
  off_t off = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buf.data(), buf.size(), off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read upload");
    if (n == 0) break;
    h.update(buf.data(), size_t(n));
    off += n;
  }
  return h.digest();
}

}  // namespace vireo::registry
