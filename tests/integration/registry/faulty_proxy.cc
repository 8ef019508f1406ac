#include "faulty_proxy.h"

#include "registry_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace vireo::registry::testing {

namespace {

int connect_loopback(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{
      .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = {htonl(INADDR_LOOPBACK)}};
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

FaultyProxy::FaultyProxy(uint16_t upstream_port, Fault fault, uint64_t after)
    : upstream_(upstream_port), fault_(fault), after_(after) {
  Listener l = listen_loopback();
  if (l.fd < 0) return;
  listen_fd_ = l.fd;
  port_ = l.port;
  acceptor_ = std::thread([this] { accept_loop(); });
}

FaultyProxy::~FaultyProxy() {
  stop_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  for (auto& t : relays_) t.join();
  ::close(listen_fd_);
}

void FaultyProxy::accept_loop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    relays_.emplace_back([this, client] { relay(client); });
  }
}

void FaultyProxy::relay(int client) {
  int server = connect_loopback(upstream_);
  if (server < 0) {
    ::close(client);
    return;
  }
  std::vector<char> buf(64 << 10);
  uint64_t from_server = 0;
  bool armed = faults_ == 0;
  while (!stop_) {
    pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    if (::poll(p, 2, 100) <= 0) continue;
    if (p[0].revents) {
      ssize_t n = ::recv(client, buf.data(), buf.size(), 0);
      if (n <= 0 || !send_all(server, buf.data(), static_cast<size_t>(n))) break;
    }
    if (p[1].revents) {
      ssize_t n = ::recv(server, buf.data(), buf.size(), 0);
      if (n <= 0) break;
      size_t len = static_cast<size_t>(n);
      if (armed && from_server + len > after_) {
        size_t at = static_cast<size_t>(after_ - from_server);
        armed = false;
        ++faults_;
        if (fault_ == Fault::kCut) {
          send_all(client, buf.data(), at);
          break;
        }
        buf[at] = static_cast<char>(buf[at] ^ 0x5a);
      }
      from_server += len;
      if (!send_all(client, buf.data(), len)) break;
    }
  }
  ::close(server);
  ::close(client);
}

}  // namespace vireo::registry::testing
