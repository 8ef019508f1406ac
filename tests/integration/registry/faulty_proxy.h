#pragma once
// A TCP proxy in front of a test server that breaks one reply on purpose: after `after` bytes
// from the server it either cuts the connection (a network drop in the middle of a blob) or
// flips one byte (a corrupted transfer). Only the first time; later connections pass intact.
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace vireo::registry::testing {

class FaultyProxy {
 public:
  enum class Fault { kCut, kCorrupt };
  FaultyProxy(uint16_t upstream_port, Fault fault, uint64_t after);
  ~FaultyProxy();
  uint16_t port() const { return port_; }
  int faults() const { return faults_; }

 private:
  void accept_loop();
  void relay(int client);

  uint16_t upstream_;
  Fault fault_;
  uint64_t after_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> faults_{0};
  std::thread acceptor_;
  std::vector<std::thread> relays_;
};

}  // namespace vireo::registry::testing
