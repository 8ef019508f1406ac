#include "server/http.h"

#include <charconv>

#include "api/error_body.h"
#include "base/strings.h"

namespace vireo::server {

std::string_view to_string(Method m) {
  switch (m) {
    case Method::kGet:
      return "GET";
    case Method::kHead:
      return "HEAD";
    case Method::kPost:
      return "POST";
    case Method::kPut:
      return "PUT";
    case Method::kPatch:
      return "PATCH";
    case Method::kDelete:
      return "DELETE";
    case Method::kOther:
      return "OTHER";
  }
  return "OTHER";
}

Method method_from_string(std::string_view s) {
  for (auto m : {Method::kGet, Method::kHead, Method::kPost, Method::kPut, Method::kPatch,
                 Method::kDelete}) {
    if (to_string(m) == s) return m;
  }
  return Method::kOther;
}

Result<Json> Request::json_body() const {
  if (trim(body).empty())
    return make_error(ErrorCode::kInvalidArgument, "request body is empty: expected a JSON object");
  return parse_json(body);
}

Result<int64_t> Request::query_int(const std::string& key, int64_t fallback, int64_t min,
                                   int64_t max) const {
  auto it = query.find(key);
  if (it == query.end()) return fallback;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  if (ec != std::errc() || p != it->second.data() + it->second.size() || v < min || v > max)
    return make_error(ErrorCode::kInvalidArgument,
                      "query parameter {}={}: expected an integer from {} to {}", key, it->second,
                      min, max);
  return v;
}

Response Response::error(const Error& e) {
  return Response{api::http_status(e.code()), api::error_body(e), {}};
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else if (s[i] == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

void parse_target(std::string_view target, std::string& path,
                  std::map<std::string, std::string>& query) {
  size_t q = target.find('?');
  path = percent_decode(target.substr(0, q), false);
  if (q == std::string_view::npos) return;
  for (const auto& pair : split(target.substr(q + 1), '&')) {
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string key = percent_decode(std::string_view(pair).substr(0, eq), true);
    std::string value = eq == std::string::npos ? "" : percent_decode(pair.substr(eq + 1), true);
    query[key] = value;
  }
}

}  // namespace vireo::server
