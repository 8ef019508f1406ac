#include "monitor/attach.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace vireo::monitor {

Result<std::unique_ptr<AttachServer>> AttachServer::create(const std::string& path, int epoll_fd,
                                                           AttachSink* sink) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return make_error(ErrorCode::kInvalidArgument, "attach socket path too long: " + path);
  std::memcpy(addr.sun_path, path.data(), path.size());
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket");
  ::unlink(path.c_str());
  // Created 0600 from the start: fchmod does not apply to a socket's file.
  mode_t old = ::umask(0177);
  int bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int bind_errno = errno;
  ::umask(old);
  if (bound != 0) return std::unexpected(Error::from_errno(bind_errno, "bind " + path));
  if (::chmod(path.c_str(), 0600) != 0) return errno_error("chmod " + path);
  if (::listen(fd.get(), 16) != 0) return errno_error("listen " + path);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd.get();
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd.get(), &ev) != 0) return errno_error("epoll_ctl");
  return std::unique_ptr<AttachServer>(new AttachServer(path, std::move(fd), epoll_fd, sink));
}

AttachServer::~AttachServer() {
  if (listener_) ::unlink(path_.c_str());
}

bool AttachServer::owns(int fd) const {
  if (listener_ && fd == listener_.get()) return true;
  return std::any_of(clients_.begin(), clients_.end(),
                     [fd](const auto& c) { return c->fd.get() == fd; });
}

void AttachServer::handle(int fd, uint32_t events) {
  if (listener_ && fd == listener_.get()) {
    accept_clients();
    return;
  }
  auto it = std::find_if(clients_.begin(), clients_.end(),
                         [fd](const auto& c) { return c->fd.get() == fd; });
  if (it == clients_.end()) return;
  Client& c = **it;
  bool ok = true;
  if (events & EPOLLOUT) ok = flush(c);
  if (ok && (events & EPOLLIN) && !input_paused_) ok = read_input(c);
  // HUP: both directions are shut down; ERR: the connection broke.
  if (ok && (events & (EPOLLHUP | EPOLLERR))) ok = false;
  if (!ok) {
    drop(fd);
    return;
  }
  update_interest(c);
}

void AttachServer::accept_clients() {
  for (;;) {
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or a client that went away while queued
    auto c = std::make_unique<Client>();
    c->fd = Fd(fd);
    epoll_event ev{};
    ev.events = input_paused_ ? 0u : static_cast<uint32_t>(EPOLLIN);
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) continue;
    clients_.push_back(std::move(c));
  }
}

bool AttachServer::read_input(Client& c) {
  char buf[4096];
  for (int rounds = 0; rounds < 16; ++rounds) {
    ssize_t n = ::read(c.fd.get(), buf, sizeof buf);
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    if (n == 0) {
      // The client shut down its writing side; it may still read output.
      c.read_closed = true;
      return true;
    }
    c.in.append(buf, static_cast<size_t>(n));
    if (!parse_frames(c)) return false;
    if (input_paused_) return true;
  }
  return true;
}

bool AttachServer::parse_frames(Client& c) {
  size_t at = 0;
  while (c.in.size() - at >= 5) {
    auto type = static_cast<FrameType>(c.in[at]);
    uint32_t n = read_be32(c.in.data() + at + 1);
    if (n > kMaxClientPayload) return false;
    if (c.in.size() - at - 5 < n) break;
    std::string_view payload(c.in.data() + at + 5, n);
    at += 5 + n;
    switch (type) {
      case FrameType::kStdin:
        sink_->on_stdin(payload);
        break;
      case FrameType::kResize:
        if (n != 4) return false;
        sink_->on_resize(read_be16(payload.data()), read_be16(payload.data() + 2));
        break;
      case FrameType::kCloseStdin:
        sink_->on_close_stdin();
        break;
      case FrameType::kPublish:
        append_frame(c.out, FrameType::kResult, sink_->on_publish(payload));
        if (!flush(c)) return false;
        update_interest(c);
        break;
      default:
        return false;
    }
  }
  c.in.erase(0, at);
  return true;
}

bool AttachServer::flush(Client& c) {
  while (c.out_offset < c.out.size()) {
    ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_offset, c.out.size() - c.out_offset,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno == EAGAIN;
    c.out_offset += static_cast<size_t>(n);
  }
  c.out.clear();
  c.out_offset = 0;
  // A burst can leave a large buffer behind; give it back.
  if (c.out.capacity() > 16 * 1024) c.out.shrink_to_fit();
  return true;
}

void AttachServer::update_interest(Client& c) {
  epoll_event ev{};
  bool want_out = c.out_offset < c.out.size();
  ev.events = (want_out ? EPOLLOUT : 0u) | (input_paused_ || c.read_closed ? 0u : EPOLLIN);
  ev.data.fd = c.fd.get();
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd.get(), &ev);
  c.want_out = want_out;
}

void AttachServer::drop(int fd) {
  auto it = std::find_if(clients_.begin(), clients_.end(),
                         [fd](const auto& c) { return c->fd.get() == fd; });
  if (it == clients_.end()) return;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  clients_.erase(it);
}

void AttachServer::broadcast(Stream stream, std::string_view data) {
  std::vector<int> slow;
  for (auto& cp : clients_) {
    Client& c = *cp;
    if (c.out.size() - c.out_offset + data.size() + 5 > kMaxQueued) {
      slow.push_back(c.fd.get());
      continue;
    }
    append_frame(c.out, static_cast<FrameType>(stream), data);
    if (c.want_out) continue;  // the socket is full; EPOLLOUT will resume
    if (!flush(c)) {
      slow.push_back(c.fd.get());
      continue;
    }
    if (c.out_offset < c.out.size()) update_interest(c);
  }
  for (int fd : slow) drop(fd);
}

void AttachServer::pause_input(bool paused) {
  if (paused == input_paused_) return;
  input_paused_ = paused;
  for (auto& c : clients_) update_interest(*c);
  // Frames already buffered while paused are handled on resume.
  if (!paused) {
    std::vector<int> bad;
    for (auto& c : clients_)
      if (!parse_frames(*c)) bad.push_back(c->fd.get());
    for (int fd : bad) drop(fd);
  }
}

void AttachServer::close_all(std::string_view exit_json) {
  for (auto& c : clients_) {
    append_frame(c->out, FrameType::kExit, exit_json);
    (void)flush(*c);
    ::shutdown(c->fd.get(), SHUT_RDWR);
  }
  clients_.clear();
  if (listener_) {
    ::unlink(path_.c_str());
    listener_.reset();
  }
}

}  // namespace vireo::monitor
