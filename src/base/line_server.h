#pragma once
// The control socket of Vireo's helper daemons (vireo-netd, vireo-storaged): a Unix socket where
// each client sends one request per line and gets one reply line, served from the daemon's own
// epoll loop so a slow client never blocks it. The caller owns the loop: it registers the
// listener, routes its events and each client's events here. Not thread-safe (one loop).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace vireo {

// A non-blocking listening Unix socket at path, mode 0600; a stale socket there is replaced,
// anything else there is an error.
[[nodiscard]] Result<Fd> listen_unix_socket(const std::filesystem::path& path);

class LineClients {
 public:
  static constexpr size_t kMaxRequestLine = 1 << 20;
  using Handler = std::function<std::string(const std::string& line)>;

  // Client fds are added to epoll_fd with tag(fd) as their event data.
  LineClients(int epoll_fd, std::function<uint64_t(int fd)> tag, Handler handle)
      : epoll_fd_(epoll_fd), tag_(std::move(tag)), handle_(std::move(handle)) {}

  // On the listener's readiness: accepts every pending client.
  void accept_from(int listener);
  // On a client's readiness: reads requests, answers complete lines, sends what it can.
  void on_event(int fd, uint32_t events);

 private:
  struct Client {
    Fd fd;
    std::string in, out;
  };
  void close(int fd);

  int epoll_fd_;
  std::function<uint64_t(int)> tag_;
  Handler handle_;
  std::map<int, Client> clients_;
};

}  // namespace vireo
