#include "registry/test_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>

#include "base/json.h"

namespace vireo::registry::testing {

namespace {

bool send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += size_t(n);
  }
  return true;
}

HttpReply parse_reply(const std::string& raw, bool head) {
  HttpReply r;
  auto end = raw.find("\r\n\r\n");
  if (end == std::string::npos || raw.size() < 12) return r;
  r.status = std::atoi(raw.substr(9, 3).c_str());
  size_t pos = raw.find("\r\n") + 2;
  while (pos < end) {
    size_t eol = raw.find("\r\n", pos);
    std::string line = raw.substr(pos, eol - pos);
    auto colon = line.find(':');
    std::string name = line.substr(0, colon);
    for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
    size_t v = colon + 1;
    while (v < line.size() && line[v] == ' ') ++v;
    r.headers[name] = line.substr(v);
    pos = eol + 2;
  }
  if (!head) r.body = raw.substr(end + 4);
  return r;
}

}  // namespace

std::string HttpReply::error_code() const {
  auto j = parse_json(body);
  if (!j || !j->is_object() || !j->contains("errors")) return {};
  try {
    return (*j)["errors"][0]["code"].get<std::string>();
  } catch (const Json::exception&) {
    return {};
  }
}

int TestClient::connect_socket() const {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port_);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

HttpReply TestClient::request(const std::string& method, const std::string& target,
                              const std::string& body,
                              const std::map<std::string, std::string>& headers) const {
  int fd = connect_socket();
  if (fd < 0) return {};
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  if (!headers.contains("Content-Length") && !headers.contains("Transfer-Encoding"))
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  std::string raw;
  if (send_all(fd, req)) {
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      raw.append(buf, size_t(n));
    }
  }
  ::close(fd);
  return parse_reply(raw, method == "HEAD");
}

void TestClient::send_and_close(const std::string& bytes) const {
  int fd = connect_socket();
  if (fd < 0) return;
  send_all(fd, bytes);
  ::close(fd);
}

}  // namespace vireo::registry::testing
