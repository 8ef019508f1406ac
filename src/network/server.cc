#include "network/server.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include <cstring>

#include <spdlog/spdlog.h>

#include "base/file.h"

namespace vireo::net {
namespace {

enum class Tag : uint64_t { kListener = 1, kClient = 2, kPort = 3, kSignal = 4 };

uint64_t make_tag(Tag kind, uint64_t id) {
  return static_cast<uint64_t>(kind) << 32 | id;
}

uint64_t monotonic_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

constexpr size_t kMaxRequestLine = 1 << 20;
constexpr uint64_t kTickNs = 1'000'000'000ull;

Result<Fd> listen_unix(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.native().size() >= sizeof(addr.sun_path))
    return make_error(ErrorCode::kInvalidArgument, "socket path {} is too long", path.string());
  std::memcpy(addr.sun_path, path.c_str(), path.native().size());
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket(AF_UNIX)");
  ::unlink(path.c_str());  // a stale socket of a previous run
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0)
    return errno_error("bind " + path.string());
  ::chmod(path.c_str(), 0600);
  if (::listen(fd.get(), 16) < 0) return errno_error("listen " + path.string());
  return fd;
}

}  // namespace

Result<std::unique_ptr<Server>> Server::create(const ServerOptions& options) {
  std::unique_ptr<Server> s(new Server());
  s->options_ = options;
  if (!options.state_dir.empty()) TRY_CTX(make_dirs(options.state_dir, 0700), "state directory");
  s->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!s->epoll_) return errno_error("epoll_create1");
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  s->signals_.reset(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!s->signals_) return errno_error("signalfd");
  TRY(s->watch(s->signals_.get(), make_tag(Tag::kSignal, 0), EPOLLIN));
  Server* raw = s.get();
  s->controller_ = std::make_unique<Controller>(
      s->datapath_, options.state_dir,
      [raw](PortId id, int fd, bool add) { raw->on_port(id, fd, add); });
  TRY_CTX(s->controller_->restore(), "restore configuration");
  s->listener_ = TRY_CTX(listen_unix(options.control_socket), "control socket");
  TRY(s->watch(s->listener_.get(), make_tag(Tag::kListener, 0), EPOLLIN));
  return s;
}

Server::~Server() {
  controller_.reset();
  if (listener_) ::unlink(options_.control_socket.c_str());
}

Result<void> Server::watch(int fd, uint64_t tag, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tag;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return errno_error("epoll_ctl add");
  return {};
}

void Server::on_port(PortId id, int fd, bool add) {
  if (!add) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    return;
  }
  if (Result<void> r = watch(fd, make_tag(Tag::kPort, id), EPOLLIN); !r)
    spdlog::error("watch port {}: {}", id, r.error().message());
}

Result<void> Server::run() {
  spdlog::info("vireo-netd listening on {}", options_.control_socket.string());
  epoll_event events[64];
  uint64_t next_tick = monotonic_ns() + kTickNs;
  while (!stop_) {
    int n = ::epoll_wait(epoll_.get(), events, 64, 1000);
    if (n < 0 && errno != EINTR) return errno_error("epoll_wait");
    uint64_t now = monotonic_ns();
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events[i].data.u64;
      auto kind = static_cast<Tag>(tag >> 32);
      uint32_t id = static_cast<uint32_t>(tag);
      if (kind == Tag::kPort) {
        datapath_.poll_port(static_cast<PortId>(id), now);
      } else if (kind == Tag::kListener) {
        accept_clients();
      } else if (kind == Tag::kClient) {
        on_client(static_cast<int>(id), events[i].events);
      } else if (kind == Tag::kSignal) {
        spdlog::info("vireo-netd: signal received, stopping");
        stop_ = true;
      }
    }
    if (now >= next_tick) {
      controller_->tick(now);
      next_tick = now + kTickNs;
    }
  }
  return {};
}

void Server::accept_clients() {
  for (;;) {
    Fd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;
    int raw = fd.get();
    if (!watch(raw, make_tag(Tag::kClient, static_cast<uint32_t>(raw)), EPOLLIN)) continue;
    clients_[raw].fd = std::move(fd);
  }
}

void Server::close_client(int fd) {
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  clients_.erase(fd);
}

void Server::on_client(int fd, uint32_t events) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  Client& c = it->second;
  if (events & EPOLLIN) {
    char buf[65536];
    ssize_t got = ::read(fd, buf, sizeof(buf));
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) return close_client(fd);
    if (got > 0) c.in.append(buf, static_cast<size_t>(got));
    size_t pos;
    while ((pos = c.in.find('\n')) != std::string::npos) {
      std::string line = c.in.substr(0, pos);
      c.in.erase(0, pos + 1);
      if (!line.empty()) c.out += controller_->handle_line(line) + "\n";
    }
    if (c.in.size() > kMaxRequestLine) return close_client(fd);
  }
  while (!c.out.empty()) {
    ssize_t put = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (put < 0) {
      if (errno != EAGAIN) return close_client(fd);
      break;
    }
    c.out.erase(0, static_cast<size_t>(put));
  }
  // Wait for room only while a reply is pending, so a slow reader never blocks forwarding.
  epoll_event ev{};
  ev.events = EPOLLIN | (c.out.empty() ? 0u : uint32_t{EPOLLOUT});
  ev.data.u64 = make_tag(Tag::kClient, static_cast<uint32_t>(fd));
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
}

}  // namespace vireo::net
