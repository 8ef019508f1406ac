#include "base/line_server.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace vireo {

Result<Fd> listen_unix_socket(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.native().size() >= sizeof(addr.sun_path))
    return make_error(ErrorCode::kInvalidArgument, "socket path {} is too long", path.string());
  std::memcpy(addr.sun_path, path.c_str(), path.native().size());
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket(AF_UNIX)");
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return make_error(ErrorCode::kAlreadyExists, "{} exists and is not a socket", path.string());
    ::unlink(path.c_str());  // a stale socket of a previous run
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0)
    return errno_error("bind " + path.string());
  ::chmod(path.c_str(), 0600);
  if (::listen(fd.get(), 16) < 0) return errno_error("listen " + path.string());
  return fd;
}

void LineClients::accept_from(int listener) {
  for (;;) {
    Fd fd(::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag_(fd.get());
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd.get(), &ev) < 0) continue;
    int raw = fd.get();
    clients_[raw].fd = std::move(fd);
  }
}

void LineClients::close(int fd) {
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  clients_.erase(fd);
}

void LineClients::on_event(int fd, uint32_t events) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  Client& c = it->second;
  if (events & EPOLLIN) {
    char buf[65536];
    ssize_t got = ::read(fd, buf, sizeof(buf));
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) return close(fd);
    if (got > 0) c.in.append(buf, static_cast<size_t>(got));
    size_t pos;
    while ((pos = c.in.find('\n')) != std::string::npos) {
      std::string line = c.in.substr(0, pos);
      c.in.erase(0, pos + 1);
      if (!line.empty()) c.out += handle_(line) + "\n";
    }
    if (c.in.size() > kMaxRequestLine) return close(fd);
  }
  while (!c.out.empty()) {
    ssize_t put = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (put < 0) {
      if (errno != EAGAIN) return close(fd);
      break;
    }
    c.out.erase(0, static_cast<size_t>(put));
  }
  // Wait for room only while a reply is pending, so a slow reader never costs the loop.
  epoll_event ev{};
  ev.events = EPOLLIN | (c.out.empty() ? 0u : uint32_t{EPOLLOUT});
  ev.data.u64 = tag_(fd);
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
}

}  // namespace vireo
