#include "registry/routes.h"

#include <vector>

#include "registry/names.h"

namespace vireo::registry {

namespace {

std::vector<std::string_view> split_path(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t slash = s.find('/', start);
    if (slash == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, slash - start));
    start = slash + 1;
  }
}

std::string join(const std::vector<std::string_view>& parts, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) {
    if (i) out += '/';
    out += parts[i];
  }
  return out;
}

// Matches the tail of the segments; returns how many leading segments form the name.
bool match(const std::vector<std::string_view>& s, Route& r) {
  size_t n = s.size();
  auto at = [&](size_t from_end) { return s[n - from_end]; };
  if (n >= 4 && at(3) == "blobs" && at(2) == "uploads") {
    r.endpoint = at(1).empty() ? Endpoint::kUploadStart : Endpoint::kUpload;
    r.ref = std::string(at(1));
    r.name = join(s, n - 3);
    return true;
  }
  if (n < 3 || at(1).empty()) return false;
  if (at(2) == "blobs")
    r.endpoint = Endpoint::kBlob;
  else if (at(2) == "manifests")
    r.endpoint = Endpoint::kManifest;
  else if (at(2) == "tags" && at(1) == "list")
    r.endpoint = Endpoint::kTags;
  else if (at(2) == "referrers")
    r.endpoint = Endpoint::kReferrers;
  else
    return false;
  r.ref = std::string(at(1));
  r.name = join(s, n - 2);
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

RegResult<Route> parse_route(std::string_view path) {
  if (path == "/v2" || path == "/v2/") return Route{};
  if (path == "/v2/_catalog") return Route{Endpoint::kCatalog, {}, {}};
  if (!path.starts_with("/v2/"))
    return reg_error(Code::kNameUnknown, "no such endpoint", std::string(path.substr(0, 200)));
  auto segments = split_path(path.substr(4));
  Route r;
  if (!match(segments, r))
    return reg_error(Code::kNameUnknown, "no such endpoint", std::string(path.substr(0, 200)));
  TRY(validate_name(r.name));
  return r;
}

std::string percent_decode_query(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out += char(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace vireo::registry
