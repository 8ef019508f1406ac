#include "network/server.h"

#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include <cstring>
#include <mutex>
#include <shared_mutex>

#include <spdlog/spdlog.h>

#include "base/file.h"
#include "base/line_server.h"

namespace vireo::net {
namespace {

enum class Tag : uint64_t { kListener = 1, kClient = 2, kSignal = 4 };

uint64_t make_tag(Tag kind, uint64_t id) {
  return static_cast<uint64_t>(kind) << 32 | id;
}

uint64_t monotonic_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

constexpr uint64_t kTickNs = 1'000'000'000ull;
constexpr uint64_t kWakeTag = ~uint64_t{0};

}  // namespace

PauseGate::PauseGate() {
  pthread_rwlockattr_t attr;
  ::pthread_rwlockattr_init(&attr);
  ::pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  ::pthread_rwlock_init(&lock_, &attr);
  ::pthread_rwlockattr_destroy(&attr);
}

PauseGate::~PauseGate() {
  ::pthread_rwlock_destroy(&lock_);
}

size_t usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) < 0) return 1;
  return static_cast<size_t>(std::max(CPU_COUNT(&set), 1));
}

Result<std::unique_ptr<Server>> Server::create(const ServerOptions& options) {
  size_t threads = options.threads ? options.threads : std::min(usable_cpus(), kDefaultMaxWorkers);
  if (threads > kMaxWorkers)
    return make_error(ErrorCode::kInvalidArgument, "{} datapath threads: at most {}", threads,
                      kMaxWorkers);
  // Before the datapath, any port or the router exists: each sizes its per-worker state by it.
  set_worker_count(threads);
  std::unique_ptr<Server> s(new Server());
  s->options_ = options;
  TRY(s->make_workers(threads));
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
      [self](const std::string& line) {
        std::unique_lock pause(self->pause_);
        return self->controller_->handle_line(line);
      });
  return s;
}

Server::~Server() {
  stop_workers();
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

Result<void> Server::make_workers(size_t count) {
  for (size_t i = 0; i < count; ++i) {
    auto w = std::make_unique<Worker>();
    w->epoll.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!w->epoll) return errno_error("epoll_create1");
    w->wake.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!w->wake) return errno_error("eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeTag;
    if (::epoll_ctl(w->epoll.get(), EPOLL_CTL_ADD, w->wake.get(), &ev) < 0)
      return errno_error("epoll_ctl add");
    workers_.push_back(std::move(w));
  }
  return {};
}

void Server::start_workers() {
  stop_workers_ = false;
  for (size_t i = 0; i < workers_.size(); ++i)
    workers_[i]->thread = std::thread([this, i] { work(i); });
}

void Server::stop_workers() {
  stop_workers_ = true;
  for (auto& w : workers_) {
    if (!w->thread.joinable()) continue;
    uint64_t one = 1;
    (void)!::write(w->wake.get(), &one, sizeof(one));
    w->thread.join();
  }
}

void Server::work(size_t index) {
  set_this_worker(index);
  Worker& w = *workers_[index];
  epoll_event events[64];
  while (!stop_workers_.load(std::memory_order_relaxed)) {
    int n = ::epoll_wait(w.epoll.get(), events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("datapath worker {}: epoll_wait: {}", index, std::strerror(errno));
      return;
    }
    uint64_t now = monotonic_ns();
    std::shared_lock pause(pause_);
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag) continue;
      // The port may have moved to another worker while this one waited for the gate.
      auto id = static_cast<PortId>(tag);
      if (datapath_.owner(id) == index) datapath_.poll_port(id, now);
    }
  }
}

void Server::on_port(PortId id, int fd, bool add) {
  if (!add) {
    Worker& w = *workers_[datapath_.owner(id)];
    ::epoll_ctl(w.epoll.get(), EPOLL_CTL_DEL, fd, nullptr);
    --w.ports;
    return;
  }
  size_t least = 0;
  for (size_t i = 1; i < workers_.size(); ++i)
    if (workers_[i]->ports < workers_[least]->ports) least = i;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = id;
  if (::epoll_ctl(workers_[least]->epoll.get(), EPOLL_CTL_ADD, fd, &ev) < 0) {
    spdlog::error("watch port {}: {}", id, std::strerror(errno));
    return;
  }
  datapath_.set_owner(id, least);
  ++workers_[least]->ports;
}

Result<void> Server::run() {
  spdlog::info("vireo-netd listening on {} ({} datapath threads)", options_.control_socket.string(),
               workers_.size());
  start_workers();
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
      if (kind == Tag::kListener) {
        clients_->accept_from(listener_.get());
      } else if (kind == Tag::kClient) {
        clients_->on_event(static_cast<int>(id), events[i].events);
      } else if (kind == Tag::kSignal) {
        spdlog::info("vireo-netd: signal received, stopping");
        stop_ = true;
      }
    }
    if (now >= next_tick) {
      std::unique_lock pause(pause_);
      controller_->tick(now);
      next_tick = now + kTickNs;
    }
  }
  stop_workers();
  controller_->save_leases();  // those granted since the last tick
  return {};
}

}  // namespace vireo::net
