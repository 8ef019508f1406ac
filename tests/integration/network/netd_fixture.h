#pragma once
// Test harness for vireo-netd integration tests: starts the real daemon, talks to its control
// socket, and creates network namespaces and veth pairs with names unique to the test
// ("vt" + random), all removed in the destructor even when the test fails.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/json.h"
#include "base/result.h"
#include "base/subprocess.h"

namespace vireo::net::testing {

using Clock = std::chrono::steady_clock;

// Runs argv and returns the result; the test fails when it cannot start.
ProcessResult run(const std::vector<std::string>& argv, int timeout_ms = 20000);

class Netd {
 public:
  // Starts vireo-netd with a control socket and state dir under dir; waits until it answers.
  // With netns, vireo-netd runs inside that network namespace (playing a host of its own).
  explicit Netd(const std::filesystem::path& dir, std::string netns = "");
  ~Netd();
  void stop();  // SIGTERM, then wait
  // SIGSTOP / SIGCONT: frames arriving meanwhile wait in (or overflow) the ports' queues.
  void pause() { ::kill(pid_, SIGSTOP); }
  void resume() { ::kill(pid_, SIGCONT); }
  // Drops the control connection (the controller goes away) and opens a new one.
  void reconnect();
  void start();
  // Sends one request and returns the reply; ok must be true unless expect_ok is false.
  Json call(const Json& request, bool expect_ok = true);

 private:
  std::filesystem::path dir_;
  std::string netns_;
  int pid_ = -1;
  Fd conn_;
};

// An AF_PACKET socket on a root-namespace interface: the test speaks raw Ethernet on the far end
// of a veth pair whose near end is a vireo-netd port (a trunk peer, a source of bad frames).
class RawSocket {
 public:
  explicit RawSocket(const std::string& ifname);
  void send(const std::vector<uint8_t>& frame);
  // Waits for a frame for which match returns true; false at the deadline.
  template <typename Match>
  bool receive_until(Match match, std::chrono::milliseconds deadline) {
    auto end = Clock::now() + deadline;
    std::vector<uint8_t> buf(65536);
    while (Clock::now() < end) {
      long n = receive(buf, end);
      if (n > 0 && match(std::vector<uint8_t>(buf.begin(), buf.begin() + n))) return true;
    }
    return false;
  }

 private:
  long receive(std::vector<uint8_t>& buf, Clock::time_point end);
  Fd fd_;
};

class Lab {
 public:
  Lab();
  ~Lab();
  std::string prefix() const { return prefix_; }
  // A namespace NAME (prefixed) with lo up.
  std::string add_namespace(const std::string& name);
  // A veth pair: host end returned (prefixed), other end "eth0" inside ns with address cidr.
  std::string add_host(const std::string& ns, const std::string& cidr,
                       const std::string& host_name);
  // A veth pair with both ends in the root namespace; returns {near, far}. The far end has
  // VLAN offload off, so a RawSocket on it sees tags inline.
  std::pair<std::string, std::string> add_wire(const std::string& name);
  // Runs a command inside ns.
  ProcessResult in(const std::string& ns, std::vector<std::string> argv, int timeout_ms = 20000);
  // Pings until one reply arrives or the deadline passes.
  bool ping_until(const std::string& ns, const std::string& ip,
                  std::chrono::seconds deadline = std::chrono::seconds(10));
  // One ping expected to get no reply (with a short wait).
  bool ping_once(const std::string& ns, const std::string& ip);
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::string prefix_;
  std::filesystem::path dir_;
  std::vector<std::string> namespaces_;
  std::vector<std::string> links_;
};

}  // namespace vireo::net::testing
