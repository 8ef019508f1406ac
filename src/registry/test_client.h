#pragma once
// A deliberately simple HTTP/1.1 client over a raw socket for the registry tests: one
// connection per request ("Connection: close"), so it can also send broken or truncated
// requests that a real client library would refuse to send.
#include <cstdint>
#include <map>
#include <string>

namespace vireo::registry::testing {

struct HttpReply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
  // The "code" of the first error in an OCI error body, empty when none.
  std::string error_code() const;
};

class TestClient {
 public:
  explicit TestClient(uint16_t port) : port_(port) {}
  // Sends method target with body (Content-Length set unless headers has one) and reads the
  // whole answer; status 0 when the connection failed.
  HttpReply request(const std::string& method, const std::string& target,
                    const std::string& body = {},
                    const std::map<std::string, std::string>& headers = {}) const;
  // Sends raw bytes and closes the connection without reading the answer.
  void send_and_close(const std::string& bytes) const;

 private:
  int connect_socket() const;
  uint16_t port_;
};

}  // namespace vireo::registry::testing
