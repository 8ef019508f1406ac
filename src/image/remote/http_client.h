#pragma once
// A small blocking HTTP/1.1 client for registries: plain TCP or TLS (verified against the
// system's CAs and an optional extra CA file, or not at all when asked), one kept-alive
// connection per origin, small bodies read whole, blob bodies streamed to a sink, uploads
// streamed from a file. No redirects here: RegistrySession follows them, since credentials must
// not follow a redirect to another origin. One HttpClient per thread.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace vireo::image::remote {

struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;    // without brackets
  std::string port;
  std::string target;  // path and query, at least "/"

  [[nodiscard]] static Result<Url> parse(std::string_view text);
  // A Location header's value (absolute, or a path on this origin).
  [[nodiscard]] Result<Url> resolve(std::string_view location) const;
  std::string origin() const;  // "https://host:port"
  std::string str() const { return origin() + target; }
};

struct TlsOptions {
  bool verify = true;
  std::string ca_file;  // PEM, trusted besides the system's CAs
};

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  int status = 0;
  Headers headers;   // names in lower case
  std::string body;  // empty when it went to a sink
  // The first value of a header, "" when absent; name in lower case.
  std::string header(std::string_view name) const;
};

struct HttpRequest {
  std::string method = "GET";
  Url url;
  Headers headers;
  std::string body;
  int body_fd = -1;  // when >= 0, body_length bytes from its current offset are sent instead
  uint64_t body_length = 0;
  // Called as the file body is sent (bytes so far).
  std::function<void(uint64_t)> on_sent;
};

// Receives a 2xx response: its status and headers first (on_head may refuse it), then the body
// as it arrives; an error from either aborts the transfer.
struct BodySink {
  std::function<Result<void>(const HttpResponse&)> on_head;
  std::function<Result<void>(const char* data, size_t size)> on_data;
};

class HttpClient {
 public:
  explicit HttpClient(TlsOptions tls = {},
                      std::chrono::milliseconds timeout = std::chrono::seconds(60));
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends the request and reads the response. With a sink, a 2xx body goes to it; other bodies
  // (errors) are read whole, up to max_body bytes.
  [[nodiscard]] Result<HttpResponse> send(const HttpRequest& req, const BodySink* sink = nullptr,
                                          size_t max_body = 16 << 20);

 private:
  class Connection;
  [[nodiscard]] Result<Connection*> connect(const Url& url);

  TlsOptions tls_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Connection> conn_;
};

}  // namespace vireo::image::remote
