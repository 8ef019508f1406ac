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
#include "base/line_server.h"

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

constexpr uint64_t kTickNs = 1'000'000'000ull;

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
      [raw](PortId id, int fd, bool add) { raw->on_port(id, fd, add); }, options.vxlan_local);
  TRY_CTX(s->controller_->restore(), "restore configuration");
  s->listener_ = TRY_CTX(listen_unix_socket(options.control_socket), "control socket");
  TRY(s->watch(s->listener_.get(), make_tag(Tag::kListener, 0), EPOLLIN));
  Server* self = s.get();
  s->clients_ = std::make_unique<LineClients>(
      s->epoll_.get(), [](int fd) { return make_tag(Tag::kClient, static_cast<uint32_t>(fd)); },
      [self](const std::string& line) { return self->controller_->handle_line(line); });
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
        clients_->accept_from(listener_.get());
      } else if (kind == Tag::kClient) {
        clients_->on_event(static_cast<int>(id), events[i].events);
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
  controller_->save_leases();  // those granted since the last tick
  return {};
}

}  // namespace vireo::net
