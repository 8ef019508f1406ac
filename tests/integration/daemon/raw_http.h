#pragma once
// Sends hand-written HTTP bytes to a Unix socket and reads the whole reply, for tests of how
// the server treats malformed and oversized requests (which the client library never sends).
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

#include "base/json.h"

namespace vireo::testing {

struct RawReply {
  int status = 0;
  std::string head;
  Json body;
};

inline RawReply raw_http(const std::string& socket_path, const std::string& request) {
  RawReply reply;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path.c_str());
  timeval tv{.tv_sec = 10, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return reply;
  }
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer and close before reading everything (413)
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string data;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) data.append(buf, static_cast<size_t>(n));
  ::close(fd);
  auto end = data.find("\r\n\r\n");
  if (data.size() < 12 || end == std::string::npos) return reply;
  reply.status = std::stoi(data.substr(9, 3));
  reply.head = data.substr(0, end);
  reply.body = Json::parse(data.substr(end + 4), nullptr, false);
  return reply;
}

inline std::string http_request(const std::string& method, const std::string& target,
                                const std::string& body = {},
                                const std::string& extra_headers = {}) {
  return method + " " + target + " HTTP/1.1\r\nHost: vireod\r\nConnection: close\r\n" +
         "Content-Length: " + std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body;
}

}  // namespace vireo::testing
