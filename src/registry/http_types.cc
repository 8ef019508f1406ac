#include "registry/http_types.h"

namespace vireo::registry {

Response Response::error(const RegistryError& e) {
  Response r;
  r.status = http_status(e.code());
  r.body = e.json_body();
  r.header("Content-Type", "application/json");
  return r;
}

RegResult<std::string> read_all(const Request& req, size_t limit) {
  if (req.content_length && *req.content_length > limit)
    return reg_error(Code::kTooLarge, fmt::format("body larger than {} bytes", limit));
  std::string out;
  if (!req.has_body) return out;
  char buf[65536];
  for (;;) {
    size_t n = TRY(req.read_body(buf, sizeof buf));
    if (n == 0) return out;
    if (out.size() + n > limit)
      return reg_error(Code::kTooLarge, fmt::format("body larger than {} bytes", limit));
    out.append(buf, n);
  }
}

}  // namespace vireo::registry
