#include "netd_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cstring>
#include <sstream>
#include <thread>

#include "base/ids.h"

extern char** environ;

namespace vireo::net::testing {

ProcessResult run(const std::vector<std::string>& argv, int timeout_ms) {
  RunOptions options;
  options.timeout = std::chrono::milliseconds(timeout_ms);
  Result<ProcessResult> r = run_process(argv, options);
  EXPECT_TRUE(r.has_value()) << argv[0] << ": " << (r ? "" : r.error().message());
  return r ? *r : ProcessResult{};
}

namespace {

Fd connect_unix(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) return Fd();
  return fd;
}

}  // namespace

Netd::Netd(const std::filesystem::path& dir, std::string netns)
    : dir_(dir), netns_(std::move(netns)) {
  start();
}

Netd::~Netd() {
  stop();
}

void Netd::start() {
  const char* bin_dir = std::getenv("VIREO_BIN_DIR");
  ASSERT_NE(bin_dir, nullptr) << "VIREO_BIN_DIR not set";
  std::string bin = std::string(bin_dir) + "/vireo-netd";
  std::string sock = (dir_ / "netd.sock").string();
  std::string state = (dir_ / "state").string();
  std::string log = (dir_ / "netd.log").string();
  // Two datapath workers whatever the machine: ports land on both, so every test crosses them.
  std::vector<std::string> args = {bin, "--control", sock, "--state", state, "--threads", "2"};
  // ip netns exec execs the daemon in place, so pid_ is vireo-netd's own.
  if (!netns_.empty()) args.insert(args.begin(), {"/usr/sbin/ip", "netns", "exec", netns_});
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  ASSERT_EQ(::posix_spawn(&pid_, args[0].c_str(), &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    conn_ = connect_unix(sock);
    if (conn_) return;
    int status = 0;
    ASSERT_EQ(::waitpid(pid_, &status, WNOHANG), 0) << "vireo-netd exited, see " << log;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL() << "vireo-netd did not open its control socket";
}

void Netd::reconnect() {
  conn_.reset();
  conn_ = connect_unix(dir_ / "netd.sock");
  EXPECT_TRUE(conn_.valid());
}

void Netd::stop() {
  conn_.reset();
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  int status = 0;
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  pid_ = -1;
}

Json Netd::call(const Json& request, bool expect_ok) {
  std::string line = request.dump() + "\n";
  EXPECT_EQ(::send(conn_.get(), line.data(), line.size(), MSG_NOSIGNAL), ssize_t(line.size()));
  std::string reply;
  char c;
  pollfd pfd{conn_.get(), POLLIN, 0};
  while (true) {
    if (::poll(&pfd, 1, 10000) != 1) {
      ADD_FAILURE() << "no reply to " << request.dump();
      return Json::object();
    }
    if (::read(conn_.get(), &c, 1) != 1) {
      ADD_FAILURE() << "control socket closed";
      return Json::object();
    }
    if (c == '\n') break;
    reply += c;
  }
  Json j = *parse_json(reply);
  if (expect_ok) {
    EXPECT_TRUE(j.value("ok", false)) << request.dump() << " → " << reply;
  }
  return j;
}

RawSocket::RawSocket(const std::string& ifname) {
  fd_.reset(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
  EXPECT_TRUE(fd_.valid());
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(ETH_P_ALL);
  addr.sll_ifindex = static_cast<int>(::if_nametoindex(ifname.c_str()));
  EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  int on = 1;
  ::setsockopt(fd_.get(), SOL_PACKET, PACKET_AUXDATA, &on, sizeof(on));
}

void RawSocket::send(const std::vector<uint8_t>& frame) {
  EXPECT_EQ(::send(fd_.get(), frame.data(), frame.size(), 0), ssize_t(frame.size()));
}

long RawSocket::receive(std::vector<uint8_t>& buf, Clock::time_point end) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
  pollfd pfd{fd_.get(), POLLIN, 0};
  if (left <= 0 || ::poll(&pfd, 1, int(left)) != 1) return -1;
  sockaddr_ll from{};
  iovec iov{buf.data() + 4, buf.size() - 4};
  alignas(cmsghdr) char control[256];
  msghdr msg{};
  msg.msg_name = &from;
  msg.msg_namelen = sizeof(from);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  long n = ::recvmsg(fd_.get(), &msg, 0);
  // Only what arrives on the wire counts, not our own transmissions.
  if (n < 12 || from.sll_pkttype == PACKET_OUTGOING) return -1;
  const tpacket_auxdata* aux = nullptr;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA)
      aux = reinterpret_cast<const tpacket_auxdata*>(CMSG_DATA(c));
  // The kernel takes the tag off into metadata; put it back where it was on the wire.
  if (!aux || !(aux->tp_status & TP_STATUS_VLAN_VALID)) {
    std::memmove(buf.data(), buf.data() + 4, size_t(n));
    return n;
  }
  std::memmove(buf.data(), buf.data() + 4, 12);
  buf[12] = 0x81;
  buf[13] = 0x00;
  buf[14] = uint8_t(aux->tp_vlan_tci >> 8);
  buf[15] = uint8_t(aux->tp_vlan_tci);
  return n + 4;
}

Lab::Lab() : prefix_("vt" + random_hex(3)) {
  dir_ = std::filesystem::temp_directory_path() / ("vireo-netd-" + prefix_);
  std::filesystem::create_directories(dir_);
}

Lab::~Lab() {
  for (const std::string& ns : namespaces_) {
    // Processes left in the namespace (an iperf3 server) would keep it alive.
    ProcessResult pids = run({"ip", "netns", "pids", ns});
    std::istringstream in(pids.out);
    for (int pid; in >> pid;) ::kill(pid, SIGKILL);
    run({"ip", "netns", "del", ns});
  }
  // Deleting a namespace removed its veth pairs already; this catches pairs left half-made.
  for (const std::string& link : links_) (void)run_process({"ip", "link", "del", link});
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string Lab::add_namespace(const std::string& name) {
  std::string ns = prefix_ + name;
  EXPECT_TRUE(run({"ip", "netns", "add", ns}).ok());
  namespaces_.push_back(ns);
  in(ns, {"ip", "link", "set", "lo", "up"});
  return ns;
}

std::string Lab::add_host(const std::string& ns, const std::string& cidr,
                          const std::string& host_name) {
  std::string host = prefix_ + host_name;
  EXPECT_TRUE(
      run({"ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns}).ok());
  links_.push_back(host);
  // No IPv6 on the host end: its router solicitations would only be noise in the counters.
  run({"sysctl", "-qw", "net.ipv6.conf." + host + ".disable_ipv6=1"});
  // The root namespace must not answer ARP on the host end for addresses it holds elsewhere
  // (a podman bridge owns 10.88.0.1 on some machines): only vireo-netd speaks on the port.
  run({"sysctl", "-qw", "net.ipv4.conf." + host + ".arp_ignore=8"});
  in(ns, {"sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"});
  if (!cidr.empty()) {
    EXPECT_TRUE(in(ns, {"ip", "addr", "add", cidr, "dev", "eth0"}).ok());
  }
  EXPECT_TRUE(in(ns, {"ip", "link", "set", "eth0", "up"}).ok());
  return host;
}

std::pair<std::string, std::string> Lab::add_wire(const std::string& name) {
  std::string near = prefix_ + name, far = prefix_ + name + "p";
  EXPECT_TRUE(run({"ip", "link", "add", near, "type", "veth", "peer", "name", far}).ok());
  links_.push_back(near);
  for (const std::string& l : {near, far}) {
    run({"sysctl", "-qw", "net.ipv6.conf." + l + ".disable_ipv6=1"});
    run({"sysctl", "-qw", "net.ipv4.conf." + l + ".arp_ignore=8"});
    run({"ip", "link", "set", l, "up"});
  }
  run({"ethtool", "-K", far, "rxvlan", "off", "txvlan", "off"});
  return {near, far};
}

ProcessResult Lab::in(const std::string& ns, std::vector<std::string> argv, int timeout_ms) {
  argv.insert(argv.begin(), {"ip", "netns", "exec", ns});
  return run(argv, timeout_ms);
}

bool Lab::ping_until(const std::string& ns, const std::string& ip, std::chrono::seconds deadline) {
  auto end = Clock::now() + deadline;
  while (Clock::now() < end) {
    if (in(ns, {"ping", "-c", "1", "-W", "1", ip}).ok()) return true;
  }
  return false;
}

bool Lab::ping_once(const std::string& ns, const std::string& ip) {
  return in(ns, {"ping", "-c", "2", "-i", "0.2", "-W", "1", ip}).ok();
}

}  // namespace vireo::net::testing
