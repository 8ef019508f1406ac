#pragma once
// PortProxy: the userspace proxy of a container's published ports (as docker-proxy or
// rootlessport). It binds every published port in the monitor's own (the host's) network
// namespace and forwards what arrives to CTR_IP:CTR_PORT inside the container's network
// namespace, through sockets it makes there (setns to the container's namespace, socket(),
// setns back: a socket stays in the namespace it was made in).
//
// TCP: every accepted connection gets a connection to the container; bytes are relayed both
// ways through a buffer per direction (allocated with the connection, at most kBufferSize),
// half-closes are passed on, and an error or reset on either side resets and closes both.
// UDP: a session socket per client address, connected to the container; replies go back to the
// client from the published socket. Sessions idle for Limits::udp_idle_ms are closed.
//
// Owns every fd it uses and registers them with the caller's epoll fd (the epoll data of each is
// the fd itself, as with the monitor's other fds); the owner's loop passes their events to
// handle(). Single-threaded: setns changes the calling thread's namespace for a moment, so
// nothing else may run on that thread meanwhile, and only one thread may use a PortProxy.
#include <netinet/in.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "monitor/options.h"

namespace vireo::monitor {

class PortProxy {
 public:
  static constexpr size_t kBufferSize = 64 * 1024;

  struct Limits {
    size_t max_connections = 1024;  // TCP connections in all; further ones are closed at once
    size_t max_udp_sessions = 256;  // per published UDP port; the least recently used goes
    int udp_idle_ms = 60 * 1000;
  };

  // Opens netns (the container's network namespace file) and binds every port in the calling
  // thread's namespace. A port that cannot be bound fails the whole call with one line:
  // "port 8080/tcp on 0.0.0.0 is already in use on the host". A host port of 0 binds an
  // ephemeral port (tests; see bound_port()).
  [[nodiscard]] static Result<std::unique_ptr<PortProxy>> create(
      const std::string& netns, const std::vector<PublishedPort>& ports, int epoll_fd,
      Limits limits);
  [[nodiscard]] static Result<std::unique_ptr<PortProxy>> create(
      const std::string& netns, const std::vector<PublishedPort>& ports, int epoll_fd) {
    return create(netns, ports, epoll_fd, Limits{});
  }
  ~PortProxy();
  PortProxy(const PortProxy&) = delete;
  PortProxy& operator=(const PortProxy&) = delete;

  // Whether fd is one of the proxy's (then handle() takes its events).
  bool owns(int fd) const;
  void handle(int fd, uint32_t events);
  // Closes every listener, connection and session.
  void stop();
  // Publishes exactly ports from now on (`vireo ct update -p`): new ones are bound first, all or
  // nothing (a port that cannot be bound fails the call and changes nothing), then the ports
  // no longer wanted are closed with their UDP sessions. Established TCP connections stay.
  [[nodiscard]] Result<void> set_ports(const std::vector<PublishedPort>& ports);

  // The host port that the i-th published port is bound to.
  uint16_t bound_port(size_t i) const;
  size_t connection_count() const { return connections_.size(); }
  size_t udp_session_count() const;

 private:
  struct Listener;
  struct Connection;
  struct Session;
  enum class Kind : uint8_t {
    kNone,
    kTcpListener,
    kUdpListener,
    kClient,
    kInner,
    kSession,
    kTimer
  };
  struct Slot {
    Kind kind = Kind::kNone;
    void* object = nullptr;
  };

  PortProxy(int epoll_fd, Limits limits);

  [[nodiscard]] Result<void> bind_port(const PublishedPort& p);
  [[nodiscard]] Result<void> ensure_timer();
  void close_listener(size_t index);
  [[nodiscard]] Result<Fd> socket_in_container(int type);
  [[nodiscard]] Result<void> add(int fd, uint32_t events, Kind kind, void* object);
  void forget(int fd);
  // Adds, changes or removes fd's epoll registration; an fd nothing is wanted from is not
  // registered at all, so that a hang-up on it cannot wake the loop over and over.
  void set_interest(int fd, uint32_t& current, uint32_t wanted);

  void accept_connections(Listener& l);
  void finish_connect(Connection& c);
  // Moves what can be moved both ways; false when the connection is done or broken (then it is
  // closed already).
  bool relay(Connection& c);
  void update_interest(Connection& c);
  void close_connection(Connection& c, bool reset);
  void pause_accepting(bool paused);

  void receive_from_clients(Listener& l);
  void receive_replies(Session& s);
  Session* open_session(Listener& l, const sockaddr_in& client);
  void close_session(Listener& l, size_t index);
  void expire_sessions();
  void arm_timer();

  int epoll_fd_;
  Limits limits_;
  Fd ctr_ns_, own_ns_;
  bool same_ns_ = false;  // the container shares the monitor's namespace: no setns needed
  Fd timer_;
  bool accept_paused_ = false;  // out of fds: listeners left out of epoll until one closes
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<Slot> slots_;           // by fd
  std::unique_ptr<char[]> datagram_;  // the UDP receive buffer, with UDP ports only
};

}  // namespace vireo::monitor
