#include "monitor/port_proxy.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace vireo::monitor {

namespace {

constexpr int kAcceptRounds = 64;
constexpr int kRelayRounds = 16;
constexpr int kDatagramRounds = 64;
constexpr size_t kDatagramSize = 64 * 1024;

std::string ipv4_text(uint32_t net_order) {
  uint32_t a = ntohl(net_order);
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) {
    if (!s.empty()) s += '.';
    s += std::to_string((a >> shift) & 0xff);
  }
  return s;
}

std::string describe(const PublishedPort& p) {
  return "port " + std::to_string(p.host_port) + (p.proto == Proto::kTcp ? "/tcp" : "/udp") +
         " on " + ipv4_text(p.host_ip);
}

sockaddr_in ipv4(uint32_t ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = ip;
  a.sin_port = htons(port);
  return a;
}

uint64_t now_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

// Closing with SO_LINGER 0 sends a reset instead of a FIN: an error passed on as one.
void reset_and_close(Fd& fd) {
  if (!fd) return;
  linger l{1, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  fd.reset();
}

}  // namespace

struct PortProxy::Listener {
  PublishedPort port;
  Fd fd;
  sockaddr_in target{};
  uint16_t bound_port = 0;
  std::vector<std::unique_ptr<Session>> sessions;  // UDP only
};

struct PortProxy::Connection {
  // One direction: bytes read from one socket, not yet written to the other.
  struct Direction {
    std::unique_ptr<char[]> buffer;  // allocated at the first read
    size_t offset = 0, length = 0;
    bool eof = false;        // the source sent its FIN
    bool shut_down = false;  // passed on as shutdown(SHUT_WR) of the destination
    bool pending() const { return offset < length; }
    bool done() const { return shut_down; }
  };
  Fd client, inner;
  bool connecting = true;
  Direction up, down;  // client to container, container to client
  uint32_t client_events = 0, inner_events = 0;
  size_t index = 0;  // in connections_
};

struct PortProxy::Session {
  Listener* listener;
  sockaddr_in client;
  Fd fd;
  uint64_t last_used_ms;
};

Result<std::unique_ptr<PortProxy>> PortProxy::create(const std::string& netns,
                                                     const std::vector<PublishedPort>& ports,
                                                     int epoll_fd, Limits limits) {
  std::unique_ptr<PortProxy> p(new PortProxy(epoll_fd, limits));
  p->ctr_ns_ = Fd(::open(netns.c_str(), O_RDONLY | O_CLOEXEC));
  if (!p->ctr_ns_) return errno_error("--netns " + netns);
  p->own_ns_ = Fd(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!p->own_ns_) return errno_error("open /proc/self/ns/net");
  struct stat ctr {
  }, own{};
  if (::fstat(p->ctr_ns_.get(), &ctr) != 0 || ::fstat(p->own_ns_.get(), &own) != 0)
    return errno_error("--netns " + netns);
  p->same_ns_ = ctr.st_dev == own.st_dev && ctr.st_ino == own.st_ino;
  for (const PublishedPort& port : ports) TRY(p->bind_port(port));
  TRY(p->ensure_timer());
  return p;
}

// UDP ports need the datagram buffer and the idle timer.
Result<void> PortProxy::ensure_timer() {
  bool udp = std::any_of(listeners_.begin(), listeners_.end(),
                         [](const auto& l) { return l->port.proto == Proto::kUdp; });
  if (!udp || timer_) return {};
  datagram_.reset(new char[kDatagramSize]);
  timer_ = Fd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!timer_) return errno_error("timerfd_create");
  return add(timer_.get(), EPOLLIN, Kind::kTimer, nullptr);
}

static bool same_host_port(const PublishedPort& a, const PublishedPort& b) {
  return a.proto == b.proto && a.host_ip == b.host_ip && a.host_port == b.host_port;
}

static bool same_port(const PublishedPort& a, const PublishedPort& b) {
  return same_host_port(a, b) && a.ctr_ip == b.ctr_ip && a.ctr_port == b.ctr_port;
}

void PortProxy::close_listener(size_t index) {
  Listener& l = *listeners_[index];
  while (!l.sessions.empty()) close_session(l, l.sessions.size() - 1);
  forget(l.fd.get());
  listeners_.erase(listeners_.begin() + static_cast<std::ptrdiff_t>(index));
}

Result<void> PortProxy::set_ports(const std::vector<PublishedPort>& ports) {
  auto wanted = [&](const PublishedPort& p) {
    return std::any_of(ports.begin(), ports.end(), [&](const auto& q) { return same_port(p, q); });
  };
  // A host port that now leads elsewhere in the container is closed first (it could not be
  // bound twice); the rest of the old set stays until the new one is complete.
  std::vector<PublishedPort> moved;
  for (size_t i = listeners_.size(); i-- > 0;) {
    const PublishedPort old = listeners_[i]->port;
    bool retargeted = !wanted(old) && std::any_of(ports.begin(), ports.end(), [&](const auto& q) {
      return same_host_port(old, q);
    });
    if (!retargeted) continue;
    moved.push_back(old);
    close_listener(i);
  }
  const size_t before = listeners_.size();
  for (const PublishedPort& p : ports) {
    bool bound = std::any_of(listeners_.begin(), listeners_.begin() + before,
                             [&](const auto& l) { return same_port(l->port, p); });
    if (bound) continue;
    if (auto r = bind_port(p); !r) {
      while (listeners_.size() > before) close_listener(listeners_.size() - 1);
      for (const PublishedPort& old : moved) (void)bind_port(old);  // best effort
      return r;
    }
  }
  for (size_t i = before; i-- > 0;)
    if (!wanted(listeners_[i]->port)) close_listener(i);
  return ensure_timer();
}

PortProxy::PortProxy(int epoll_fd, Limits limits) : epoll_fd_(epoll_fd), limits_(limits) {}

PortProxy::~PortProxy() {
  stop();
}

Result<void> PortProxy::bind_port(const PublishedPort& p) {
  auto l = std::make_unique<Listener>();
  l->port = p;
  l->target = ipv4(p.ctr_ip, p.ctr_port);
  bool tcp = p.proto == Proto::kTcp;
  l->fd = Fd(::socket(AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!l->fd) return errno_error("socket");
  int one = 1;
  if (tcp && ::setsockopt(l->fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
    return errno_error("SO_REUSEADDR");
  sockaddr_in addr = ipv4(p.host_ip, p.host_port);
  if (::bind(l->fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == EADDRINUSE)
      return make_error(ErrorCode::kConflict, describe(p) + " is already in use on the host");
    return errno_error(describe(p));
  }
  if (tcp && ::listen(l->fd.get(), SOMAXCONN) != 0) return errno_error(describe(p) + ": listen");
  socklen_t len = sizeof addr;
  if (::getsockname(l->fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return errno_error(describe(p) + ": getsockname");
  l->bound_port = ntohs(addr.sin_port);
  TRY(add(l->fd.get(), EPOLLIN, tcp ? Kind::kTcpListener : Kind::kUdpListener, l.get()));
  listeners_.push_back(std::move(l));
  return {};
}

Result<Fd> PortProxy::socket_in_container(int type) {
  type |= SOCK_NONBLOCK | SOCK_CLOEXEC;
  if (same_ns_) {
    Fd fd(::socket(AF_INET, type, 0));
    if (!fd) return errno_error("socket");
    return fd;
  }
  if (::setns(ctr_ns_.get(), CLONE_NEWNET) != 0)
    return errno_error("enter the container's network namespace");
  int fd = ::socket(AF_INET, type, 0);
  int err = errno;
  // Staying in the container's namespace would put every later host socket there.
  if (::setns(own_ns_.get(), CLONE_NEWNET) != 0) std::abort();
  if (fd < 0) return std::unexpected(Error::from_errno(err, "socket"));
  return Fd(fd);
}

Result<void> PortProxy::add(int fd, uint32_t events, Kind kind, void* object) {
  if (events != 0) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) return errno_error("epoll_ctl");
  }
  if (slots_.size() <= static_cast<size_t>(fd)) slots_.resize(static_cast<size_t>(fd) + 1);
  slots_[static_cast<size_t>(fd)] = {kind, object};
  return {};
}

void PortProxy::forget(int fd) {
  if (fd >= 0 && static_cast<size_t>(fd) < slots_.size()) slots_[static_cast<size_t>(fd)] = {};
}

void PortProxy::set_interest(int fd, uint32_t& current, uint32_t wanted) {
  if (wanted == current) return;
  epoll_event ev{};
  ev.events = wanted;
  ev.data.fd = fd;
  int op = wanted == 0 ? EPOLL_CTL_DEL : current == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (::epoll_ctl(epoll_fd_, op, fd, &ev) == 0) current = wanted;
}

bool PortProxy::owns(int fd) const {
  return fd >= 0 && static_cast<size_t>(fd) < slots_.size() &&
         slots_[static_cast<size_t>(fd)].kind != Kind::kNone;
}

void PortProxy::handle(int fd, uint32_t events) {
  if (!owns(fd)) return;
  Slot slot = slots_[static_cast<size_t>(fd)];
  switch (slot.kind) {
    case Kind::kTcpListener:
      accept_connections(*static_cast<Listener*>(slot.object));
      break;
    case Kind::kUdpListener:
      receive_from_clients(*static_cast<Listener*>(slot.object));
      break;
    case Kind::kClient:
    case Kind::kInner: {
      auto& c = *static_cast<Connection*>(slot.object);
      if (events & EPOLLERR) {
        close_connection(c, true);
      } else if (c.connecting) {
        if (slot.kind == Kind::kInner) finish_connect(c);
      } else if (relay(c)) {
        update_interest(c);
      }
      break;
    }
    case Kind::kSession:
      receive_replies(*static_cast<Session*>(slot.object));
      break;
    case Kind::kTimer:
      expire_sessions();
      break;
    case Kind::kNone:
      break;
  }
}

void PortProxy::stop() {
  while (!connections_.empty()) close_connection(*connections_.back(), false);
  for (auto& l : listeners_) {
    while (!l->sessions.empty()) close_session(*l, l->sessions.size() - 1);
    forget(l->fd.get());
  }
  listeners_.clear();  // closing an fd takes it out of epoll
  if (timer_) forget(timer_.get());
  timer_.reset();
}

uint16_t PortProxy::bound_port(size_t i) const {
  return i < listeners_.size() ? listeners_[i]->bound_port : 0;
}

size_t PortProxy::udp_session_count() const {
  size_t n = 0;
  for (const auto& l : listeners_) n += l->sessions.size();
  return n;
}

// ---- TCP

void PortProxy::accept_connections(Listener& l) {
  for (int round = 0; round < kAcceptRounds; ++round) {
    Fd client(::accept4(l.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!client) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      // Out of fds or memory: the pending connection stays queued, and the listener would stay
      // readable; wait until a connection closes instead of spinning.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        pause_accepting(true);
      return;
    }
    if (connections_.size() >= limits_.max_connections) continue;  // closed at once
    auto inner = socket_in_container(SOCK_STREAM);
    if (!inner) continue;
    int one = 1;
    ::setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(inner->get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int r = ::connect(inner->get(), reinterpret_cast<const sockaddr*>(&l.target), sizeof l.target);
    if (r != 0 && errno != EINPROGRESS) {
      reset_and_close(client);
      continue;
    }
    auto c = std::make_unique<Connection>();
    c->client = std::move(client);
    c->inner = std::move(*inner);
    c->index = connections_.size();
    if (!add(c->client.get(), 0, Kind::kClient, c.get()) ||
        !add(c->inner.get(), EPOLLOUT, Kind::kInner, c.get())) {
      forget(c->client.get());
      forget(c->inner.get());
      continue;
    }
    c->inner_events = EPOLLOUT;
    connections_.push_back(std::move(c));
  }
}

void PortProxy::finish_connect(Connection& c) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(c.inner.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {  // refused, unreachable: the client sees a reset
    close_connection(c, true);
    return;
  }
  sockaddr_in peer{};
  len = sizeof peer;
  if (::getpeername(c.inner.get(), reinterpret_cast<sockaddr*>(&peer), &len) != 0) {
    if (errno != ENOTCONN) close_connection(c, true);
    return;  // not connected yet: a stale wake-up
  }
  c.connecting = false;
  if (relay(c)) update_interest(c);
}

namespace {

enum class Moved { kOk, kError };

// Moves bytes from src to dst through d's buffer until either would block; passes the source's
// FIN on once everything before it is written.
template <typename Direction>
Moved move_bytes(Direction& d, int src, int dst, size_t buffer_size) {
  for (int round = 0; round < kRelayRounds; ++round) {
    if (d.pending()) {
      ssize_t n = ::send(dst, d.buffer.get() + d.offset, d.length - d.offset, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return Moved::kOk;
      if (n < 0) return Moved::kError;
      d.offset += static_cast<size_t>(n);
      if (d.offset == d.length) d.offset = d.length = 0;
      continue;
    }
    if (d.eof) break;
    if (!d.buffer) d.buffer.reset(new char[buffer_size]);
    ssize_t n = ::recv(src, d.buffer.get(), buffer_size, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return Moved::kOk;
    if (n < 0) return Moved::kError;
    if (n == 0) {
      d.eof = true;
      break;
    }
    d.length = static_cast<size_t>(n);
  }
  if (d.eof && !d.pending() && !d.shut_down) {
    if (::shutdown(dst, SHUT_WR) != 0 && errno != ENOTCONN) return Moved::kError;
    d.shut_down = true;
  }
  return Moved::kOk;
}

}  // namespace

bool PortProxy::relay(Connection& c) {
  if (move_bytes(c.up, c.client.get(), c.inner.get(), kBufferSize) == Moved::kError ||
      move_bytes(c.down, c.inner.get(), c.client.get(), kBufferSize) == Moved::kError) {
    close_connection(c, true);
    return false;
  }
  if (c.up.done() && c.down.done()) {
    close_connection(c, false);
    return false;
  }
  return true;
}

void PortProxy::update_interest(Connection& c) {
  auto reads = [](const Connection::Direction& d) { return !d.eof && !d.pending(); };
  uint32_t client = (reads(c.up) ? EPOLLIN : 0u) | (c.down.pending() ? EPOLLOUT : 0u);
  uint32_t inner = (reads(c.down) ? EPOLLIN : 0u) | (c.up.pending() ? EPOLLOUT : 0u);
  set_interest(c.client.get(), c.client_events, client);
  set_interest(c.inner.get(), c.inner_events, inner);
}

void PortProxy::close_connection(Connection& c, bool reset) {
  forget(c.client.get());
  forget(c.inner.get());
  if (reset) {
    reset_and_close(c.client);
    reset_and_close(c.inner);
  }
  size_t index = c.index;
  if (index + 1 != connections_.size()) {
    std::swap(connections_[index], connections_.back());
    connections_[index]->index = index;
  }
  connections_.pop_back();  // c is gone from here on
  if (accept_paused_) pause_accepting(false);
}

void PortProxy::pause_accepting(bool paused) {
  if (paused == accept_paused_) return;
  accept_paused_ = paused;
  for (auto& l : listeners_) {
    if (l->port.proto != Proto::kTcp) continue;
    uint32_t in = EPOLLIN;
    uint32_t current = paused ? in : 0;
    set_interest(l->fd.get(), current, paused ? 0 : in);
  }
}

// ---- UDP

void PortProxy::receive_from_clients(Listener& l) {
  for (int round = 0; round < kDatagramRounds; ++round) {
    sockaddr_in from{};
    socklen_t len = sizeof from;
    ssize_t n = ::recvfrom(l.fd.get(), datagram_.get(), kDatagramSize, 0,
                           reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;  // EAGAIN, or an error queued by an ICMP message: nothing to pass on
    Session* s = nullptr;
    for (auto& candidate : l.sessions) {
      if (candidate->client.sin_addr.s_addr == from.sin_addr.s_addr &&
          candidate->client.sin_port == from.sin_port) {
        s = candidate.get();
        break;
      }
    }
    if (!s) s = open_session(l, from);
    if (!s) continue;
    s->last_used_ms = now_ms();
    (void)::send(s->fd.get(), datagram_.get(), static_cast<size_t>(n), MSG_NOSIGNAL);
  }
}

void PortProxy::receive_replies(Session& s) {
  for (int round = 0; round < kDatagramRounds; ++round) {
    ssize_t n = ::recv(s.fd.get(), datagram_.get(), kDatagramSize, 0);
    if (n < 0 && (errno == EINTR || errno == ECONNREFUSED)) continue;
    if (n < 0) return;
    s.last_used_ms = now_ms();
    (void)::sendto(s.listener->fd.get(), datagram_.get(), static_cast<size_t>(n), MSG_NOSIGNAL,
                   reinterpret_cast<const sockaddr*>(&s.client), sizeof s.client);
  }
}

PortProxy::Session* PortProxy::open_session(Listener& l, const sockaddr_in& client) {
  if (l.sessions.size() >= limits_.max_udp_sessions && !l.sessions.empty()) {
    auto oldest = std::min_element(
        l.sessions.begin(), l.sessions.end(),
        [](const auto& a, const auto& b) { return a->last_used_ms < b->last_used_ms; });
    close_session(l, static_cast<size_t>(oldest - l.sessions.begin()));
  }
  auto fd = socket_in_container(SOCK_DGRAM);
  if (!fd) return nullptr;
  if (::connect(fd->get(), reinterpret_cast<const sockaddr*>(&l.target), sizeof l.target) != 0)
    return nullptr;
  auto s = std::make_unique<Session>(Session{&l, client, std::move(*fd), now_ms()});
  if (!add(s->fd.get(), EPOLLIN, Kind::kSession, s.get())) return nullptr;
  l.sessions.push_back(std::move(s));
  if (l.sessions.size() == 1) arm_timer();
  return l.sessions.back().get();
}

void PortProxy::close_session(Listener& l, size_t index) {
  forget(l.sessions[index]->fd.get());
  std::swap(l.sessions[index], l.sessions.back());
  l.sessions.pop_back();
}

void PortProxy::expire_sessions() {
  uint64_t expirations;
  while (::read(timer_.get(), &expirations, sizeof expirations) > 0) {
  }
  uint64_t now = now_ms();
  for (auto& l : listeners_) {
    for (size_t i = l->sessions.size(); i-- > 0;) {
      if (now - l->sessions[i]->last_used_ms >= static_cast<uint64_t>(limits_.udp_idle_ms))
        close_session(*l, i);
    }
  }
  arm_timer();
}

// Arms the timer for the earliest time a session can have been idle long enough; a session used
// since then is checked again at its own time.
void PortProxy::arm_timer() {
  if (!timer_) return;
  uint64_t oldest = UINT64_MAX;
  for (const auto& l : listeners_)
    for (const auto& s : l->sessions) oldest = std::min(oldest, s->last_used_ms);
  itimerspec spec{};
  if (oldest != UINT64_MAX) {
    uint64_t at = oldest + static_cast<uint64_t>(limits_.udp_idle_ms);
    spec.it_value.tv_sec = static_cast<time_t>(at / 1000);
    spec.it_value.tv_nsec = static_cast<long>(at % 1000) * 1000000;
    if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
  }
  ::timerfd_settime(timer_.get(), TFD_TIMER_ABSTIME, &spec, nullptr);
}

}  // namespace vireo::monitor
