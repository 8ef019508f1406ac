// PortProxy against real echo servers on 127.0.0.1, with the current network namespace standing
// in for the container's (so no root is needed). The proxy runs on the test's thread, in its own
// epoll loop; clients and servers run on other threads and wake the loop through an eventfd
// when they are done.
#include "monitor/port_proxy.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <random>
#include <thread>

#include <gtest/gtest.h>

namespace vireo::monitor {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kTimeout = std::chrono::seconds(20);
const uint32_t kLoopback = htonl(INADDR_LOOPBACK);

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = kLoopback;
  a.sin_port = htons(port);
  return a;
}

uint16_t local_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// A socket on 127.0.0.1 with an ephemeral port; blocking, every call bounded by a timeout.
Fd bound_socket(int type) {
  Fd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  sockaddr_in a = loopback(0);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  timeval tv{20, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

Fd connect_to(uint16_t port) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{20, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a = loopback(port);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << errno;
  return fd;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Everything until end of file; "<error N>" appended when reading failed instead.
std::string read_to_eof(int fd) {
  std::string out;
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return out;
    if (n < 0) return out + "<error " + std::to_string(errno) + ">";
    out.append(buf, static_cast<size_t>(n));
  }
}

std::string read_exactly(int fd, size_t size) {
  std::string out;
  char buf[4096];
  while (out.size() < size) {
    ssize_t n = ::recv(fd, buf, std::min(sizeof buf, size - out.size()), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Echo servers on 127.0.0.1: TCP (one thread per connection; end of file is answered with
// shutdown(SHUT_WR) once everything is echoed) and UDP.
class EchoServers {
 public:
  EchoServers() : tcp_(bound_socket(SOCK_STREAM)), udp_(bound_socket(SOCK_DGRAM)) {
    ::listen(tcp_.get(), 64);
    stop_ = Fd(::eventfd(0, EFD_CLOEXEC));
    tcp_thread_ = std::thread([this] { serve_tcp(); });
    udp_thread_ = std::thread([this] { serve_udp(); });
  }
  ~EchoServers() {
    uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof one);
    tcp_thread_.join();
    udp_thread_.join();
    for (auto& t : connections_) t.join();
  }
  uint16_t tcp_port() const { return local_port(tcp_.get()); }
  uint16_t udp_port() const { return local_port(udp_.get()); }

 private:
  bool wait(int fd) {
    pollfd p[2] = {{fd, POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    return ::poll(p, 2, -1) > 0 && !(p[1].revents & POLLIN);
  }
  void serve_tcp() {
    while (wait(tcp_.get())) {
      int c = ::accept4(tcp_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      connections_.emplace_back([c] {
        Fd fd(c);
        char buf[64 * 1024];
        for (;;) {
          ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
          if (n <= 0) break;
          if (!write_all(fd.get(), std::string_view(buf, static_cast<size_t>(n)))) return;
        }
        ::shutdown(fd.get(), SHUT_WR);
        char rest;
        (void)::recv(fd.get(), &rest, 1, 0);  // until the proxy closes
      });
    }
  }
  void serve_udp() {
    char buf[64 * 1024];
    while (wait(udp_.get())) {
      sockaddr_in from{};
      socklen_t len = sizeof from;
      ssize_t n = ::recvfrom(udp_.get(), buf, sizeof buf, MSG_DONTWAIT,
                             reinterpret_cast<sockaddr*>(&from), &len);
      if (n > 0)
        ::sendto(udp_.get(), buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from),
                 len);
    }
  }

  Fd tcp_, udp_, stop_;
  std::thread tcp_thread_, udp_thread_;
  std::vector<std::thread> connections_;
};

PublishedPort port(Proto proto, uint16_t ctr_port, uint16_t host_port = 0) {
  return {proto, kLoopback, host_port, kLoopback, ctr_port};
}

class PortProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
    wake_ = Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_.get();
    ASSERT_EQ(::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev), 0);
  }

  void start(const std::vector<PublishedPort>& ports, PortProxy::Limits limits = {}) {
    auto p = PortProxy::create("/proc/self/ns/net", ports, epoll_.get(), limits);
    ASSERT_TRUE(p) << p.error().message();
    proxy_ = std::move(*p);
  }

  // Runs f on another thread while the proxy's loop runs here; returns f's result.
  template <typename F>
  auto in_thread(F f) {
    std::atomic<bool> done{false};
    auto result = std::async(std::launch::async, [&] {
      auto r = f();
      done = true;
      uint64_t one = 1;
      (void)!::write(wake_.get(), &one, sizeof one);
      return r;
    });
    bool finished = run_until([&] { return done.load(); });
    EXPECT_TRUE(finished) << "timed out";
    if (!finished) proxy_->stop();  // the thread's sockets see the end and it returns
    return result.get();
  }

  // Runs the loop until cond holds (checked after every wake-up) or the timeout passes.
  bool run_until(const std::function<bool()>& cond) {
    auto deadline = Clock::now() + kTimeout;
    while (!cond()) {
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      epoll_event events[16];
      int n = ::epoll_wait(epoll_.get(), events, 16, static_cast<int>(left));
      for (int i = 0; i < n; ++i) {
        if (events[i].data.fd == wake_.get()) {
          uint64_t v;
          (void)!::read(wake_.get(), &v, sizeof v);
        } else {
          EXPECT_TRUE(proxy_->owns(events[i].data.fd));
          proxy_->handle(events[i].data.fd, events[i].events);
        }
      }
    }
    return true;
  }

  EchoServers servers_;
  Fd epoll_, wake_;
  std::unique_ptr<PortProxy> proxy_;
};

TEST_F(PortProxyTest, TcpRelaysFourMebibytesBothWaysAndPassesOnTheHalfClose) {
  size_t mib = 4;
  if (const char* env = ::getenv("VIREO_PROXY_BENCH_MIB")) mib = std::strtoul(env, nullptr, 10);
  start({port(Proto::kTcp, servers_.tcp_port())});
  std::string payload(mib * 1024 * 1024, '\0');
  std::mt19937 rng(7);
  for (char& c : payload) c = static_cast<char>(rng());
  auto began = Clock::now();
  std::string echoed = in_thread([&] {
    Fd c = connect_to(proxy_->bound_port(0));
    std::thread writer([&] {
      EXPECT_TRUE(write_all(c.get(), payload));
      ::shutdown(c.get(), SHUT_WR);  // the echo server answers the FIN with its own
    });
    std::string got = read_to_eof(c.get());
    writer.join();
    return got;
  });
  double seconds = std::chrono::duration<double>(Clock::now() - began).count();
  ASSERT_EQ(echoed.size(), payload.size());
  EXPECT_TRUE(echoed == payload);
  std::printf("proxied %zu MiB each way in %.3f s: %.0f MiB/s\n", mib, seconds,
              static_cast<double>(mib) / seconds);
  EXPECT_TRUE(run_until([&] { return proxy_->connection_count() == 0; }));
}

TEST_F(PortProxyTest, TcpServesTwoConnectionsAtOnce) {
  start({port(Proto::kTcp, servers_.tcp_port())});
  uint16_t p = proxy_->bound_port(0);
  bool ok = in_thread([&] {
    Fd a = connect_to(p), b = connect_to(p);
    bool sent = write_all(a.get(), "from a") && write_all(b.get(), "from b");
    bool echoed = read_exactly(b.get(), 6) == "from b" && read_exactly(a.get(), 6) == "from a";
    ::shutdown(a.get(), SHUT_WR);
    bool b_still_open = write_all(b.get(), "again") && read_exactly(b.get(), 5) == "again";
    return sent && echoed && read_to_eof(a.get()).empty() && b_still_open;
  });
  EXPECT_TRUE(ok);
  EXPECT_TRUE(run_until([&] { return proxy_->connection_count() == 0; }));
}

TEST_F(PortProxyTest, TcpConnectionRefusedInTheContainerClosesTheClient) {
  Fd closed_port = bound_socket(SOCK_STREAM);  // bound, never listening: connections refused
  start({port(Proto::kTcp, local_port(closed_port.get()))});
  std::string got = in_thread([&] {
    Fd c = connect_to(proxy_->bound_port(0));
    return read_to_eof(c.get());
  });
  EXPECT_TRUE(got.empty() || got == "<error " + std::to_string(ECONNRESET) + ">") << got;
  EXPECT_EQ(proxy_->connection_count(), 0u);
}

TEST_F(PortProxyTest, TcpConnectionsBeyondTheLimitAreClosedAtOnce) {
  start({port(Proto::kTcp, servers_.tcp_port())}, {.max_connections = 1});
  uint16_t p = proxy_->bound_port(0);
  bool ok = in_thread([&] {
    Fd a = connect_to(p);
    bool first = write_all(a.get(), "x") && read_exactly(a.get(), 1) == "x";
    Fd b = connect_to(p);
    return first && read_to_eof(b.get()).empty();
  });
  EXPECT_TRUE(ok);
}

TEST_F(PortProxyTest, UdpRoundTripsForTwoClientAddresses) {
  start({port(Proto::kUdp, servers_.udp_port())});
  sockaddr_in to = loopback(proxy_->bound_port(0));
  bool ok = in_thread([&] {
    Fd a = bound_socket(SOCK_DGRAM), b = bound_socket(SOCK_DGRAM);
    bool good = true;
    for (int round = 0; round < 2; ++round) {
      for (auto [fd, text] : {std::pair{a.get(), "one"}, std::pair{b.get(), "two"}}) {
        ::sendto(fd, text, std::strlen(text), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
        char buf[16] = {};
        sockaddr_in from{};
        socklen_t len = sizeof from;
        ssize_t n =
            ::recvfrom(fd, buf, sizeof buf - 1, 0, reinterpret_cast<sockaddr*>(&from), &len);
        good = good && n == 3 && std::string(buf) == text && from.sin_port == to.sin_port;
      }
    }
    return good;
  });
  EXPECT_TRUE(ok);
  EXPECT_EQ(proxy_->udp_session_count(), 2u);
}

TEST_F(PortProxyTest, UdpSessionsCloseWhenIdleAndTheOldestMakesRoom) {
  start({port(Proto::kUdp, servers_.udp_port())}, {.max_udp_sessions = 1, .udp_idle_ms = 1000});
  sockaddr_in to = loopback(proxy_->bound_port(0));
  Fd a = bound_socket(SOCK_DGRAM), b = bound_socket(SOCK_DGRAM);
  bool ok = in_thread([&] {
    bool good = true;
    for (int fd : {a.get(), b.get(), a.get()}) {
      ::sendto(fd, "hey", 3, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
      char buf[8];
      good = good && ::recv(fd, buf, sizeof buf, 0) == 3;
    }
    return good;
  });
  EXPECT_TRUE(ok);
  EXPECT_EQ(proxy_->udp_session_count(), 1u);
  EXPECT_TRUE(run_until([&] { return proxy_->udp_session_count() == 0; }));
}

TEST_F(PortProxyTest, PortTakenOnTheHostFailsWithOneClearLine) {
  Fd taken = bound_socket(SOCK_STREAM);
  ASSERT_EQ(::listen(taken.get(), 1), 0);
  uint16_t p = local_port(taken.get());
  auto proxy = PortProxy::create("/proc/self/ns/net",
                                 {port(Proto::kUdp, 53), port(Proto::kTcp, 80, p)}, epoll_.get());
  ASSERT_FALSE(proxy);
  EXPECT_EQ(proxy.error().message(),
            "port " + std::to_string(p) + "/tcp on 127.0.0.1 is already in use on the host");

  Fd taken_udp = bound_socket(SOCK_DGRAM);
  uint16_t u = local_port(taken_udp.get());
  proxy = PortProxy::create("/proc/self/ns/net", {port(Proto::kUdp, 53, u)}, epoll_.get());
  ASSERT_FALSE(proxy);
  EXPECT_EQ(proxy.error().message(),
            "port " + std::to_string(u) + "/udp on 127.0.0.1 is already in use on the host");
}

TEST_F(PortProxyTest, OtherBindErrorsCarryTheErrnoText) {
  PublishedPort p{Proto::kTcp, htonl(0xC0000201), 8080, kLoopback, 80};  // 192.0.2.1: not ours
  auto proxy = PortProxy::create("/proc/self/ns/net", {p}, epoll_.get());
  ASSERT_FALSE(proxy);
  EXPECT_EQ(proxy.error().message(),
            "port 8080/tcp on 192.0.2.1: " + std::string(::strerrordesc_np(EADDRNOTAVAIL)));
}

TEST_F(PortProxyTest, MissingNetnsFileIsAnError) {
  auto proxy = PortProxy::create("/no/such/netns", {port(Proto::kTcp, 80)}, epoll_.get());
  ASSERT_FALSE(proxy);
  EXPECT_EQ(proxy.error().message().rfind("--netns /no/such/netns: ", 0), 0u)
      << proxy.error().message();
}

}  // namespace
}  // namespace vireo::monitor
