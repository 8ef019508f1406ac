#pragma once
// The server's view of one HTTP exchange, free of the HTTP library's types so that routing,
// handlers and their tests do not depend on Boost.Beast.
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace vireo::server {

enum class Method { kGet, kHead, kPost, kPut, kPatch, kDelete, kOther };

std::string_view to_string(Method m);
Method method_from_string(std::string_view s);

struct Request {
  Method method = Method::kGet;
  std::string path;                           // percent-decoded, without the query
  std::map<std::string, std::string> query;   // percent-decoded
  std::map<std::string, std::string> params;  // filled by the router from {placeholders}
  std::string body;
  std::string if_match;  // raw If-Match header, empty when absent
  std::string peer;      // "unix" or the TCP peer address

  // The body as JSON; an empty or malformed body is a kInvalidArgument error naming the problem.
  Result<Json> json_body() const;
  // A query parameter as an integer within [min, max]; fallback when absent.
  Result<int64_t> query_int(const std::string& key, int64_t fallback, int64_t min,
                            int64_t max) const;
};

struct Response {
  int status = 200;
  Json body = Json::object();
  std::vector<std::pair<std::string, std::string>> headers;

  static Response json(Json body, int status = 200) {
    return Response{status, std::move(body), {}};
  }
  static Response error(const Error& e);
  Response& header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
};

// Handlers answer through the responder exactly once, now or later (long polls, waits).
using Responder = std::function<void(Response)>;
using Handler = std::function<void(Request&, Responder)>;
using SyncHandler = std::function<Result<Response>(Request&)>;

// "%2Fa+b" → "/a b" for query strings (plus_is_space) or "/a+b" for paths.
std::string percent_decode(std::string_view s, bool plus_is_space);
// Splits "/1.0/x?wait=5&a=b" into path and query.
void parse_target(std::string_view target, std::string& path,
                  std::map<std::string, std::string>& query);

}  // namespace vireo::server
