#pragma once
// One HTTP exchange as the registry handlers see it, free of Boost.Beast types: the request with
// a pull-style body reader (bodies are streamed, never held whole), and a response that is
// either a small string or a range of an open file.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "registry/errors.h"

namespace vireo::registry {

// Reads up to cap body bytes into buf; 0 at the end of the body.
using BodyReader = std::function<RegResult<size_t>(char* buf, size_t cap)>;

struct Request {
  std::string method;                          // "GET", "HEAD", ...
  std::string path;                            // raw (not percent-decoded), without the query
  std::map<std::string, std::string> query;    // percent-decoded
  std::map<std::string, std::string> headers;  // lower-case names
  std::optional<uint64_t> content_length;
  bool has_body = false;
  BodyReader read_body;

  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
  std::string param(const std::string& key) const {
    auto it = query.find(key);
    return it == query.end() ? std::string() : it->second;
  }
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // A file response: length bytes from offset of file (body unused).
  Fd file;
  uint64_t file_offset = 0;
  uint64_t file_length = 0;
  // Content-Length of a HEAD answer (no body is sent).
  std::optional<uint64_t> head_length;

  Response& header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  static Response error(const RegistryError& e);
};

// Reads the whole body (at most limit bytes): SIZE_INVALID 413 beyond.
RegResult<std::string> read_all(const Request& req, size_t limit);

}  // namespace vireo::registry
