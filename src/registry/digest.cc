#include "registry/digest.h"

namespace vireo::registry {

namespace {

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

}  // namespace vireo::registry
