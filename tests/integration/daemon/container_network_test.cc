// Containers on Vireo networks through vireod and `vireo ct`, as a Docker user expects of the
// default bridge: each container gets an address on the default network (vireo0, served by
// vireo-netd) from its IPAM, reaches the others by address and by name (the network's DNS),
// keeps its address across restarts, and publishes ports to the host (-p). Bad port specs,
// taken ports, unknown networks: one line, nothing left behind (no container, no interface, no
// reservation).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/ranges.h>

#include "base/fd.h"
#include "base/json.h"
#include "cli_expect.h"
#include "daemon_process.h"
#include "tls_fixture.h"

namespace vireo::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Sends request to 127.0.0.1:port and reads until the peer closes; "" when the connection
// failed or was closed without a reply.
std::string exchange(uint16_t port, const std::string& request) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{.tv_sec = 5, .tv_usec = 0};
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{
      .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = {htonl(INADDR_LOOPBACK)}};
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return "";
  if (::send(s.get(), request.data(), request.size(), MSG_NOSIGNAL) < 0) return "";
  std::string reply;
  char buf[4096];
  for (ssize_t n; (n = ::recv(s.get(), buf, sizeof buf, 0)) > 0;) reply.append(buf, n);
  return reply;
}

// The service in the container starts listening a moment after the container starts: ask
// until it answers (bounded).
std::string exchange_when_up(uint16_t port, const std::string& request) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  std::string reply;
  while ((reply = exchange(port, request)).empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  return reply;
}

class ContainerNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "containers on networks need root";
    ASSERT_TRUE(d.start()) << "vireod did not start";
    ASSERT_EQ(import_busybox(d, {"sh", "echo", "cat", "sleep", "ping", "nslookup", "httpd", "mkdir",
                                 "ip", "hostname", "wget"}),
              "");
  }
  void TearDown() override {
    if (::geteuid() != 0) return;
    for (const auto& c : json({"ct", "ps", "-a"})) d.cli({"ct", "rm", "-f", c.value("name", "")});
  }

  Json json(std::vector<std::string> args) const { return cli_json(d, std::move(args)); }
  Json inspect(const std::string& name) const { return json({"ct", "inspect", name}); }
  size_t container_count() const { return json({"ct", "ps", "-a"}).size(); }

  DaemonProcess d;
};

bool link_exists(const std::string& name) {
  return ::if_nametoindex(name.c_str()) != 0;
}

TEST_F(ContainerNetworkTest, ContainersReachEachOtherByAddressAndName) {
  auto r = d.cli({"ct", "run", "-d", "--name", "db", "busybox:1", "sleep", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json db = inspect("db");
  ASSERT_TRUE(db["network"].is_object()) << db.dump();
  const std::string ip = db["network"].value("ip", "");
  const std::string iface = db["network"].value("iface", "");
  EXPECT_EQ(db["network"].value("network", ""), "vireo0");
  EXPECT_TRUE(ip.starts_with("10.99.0.")) << ip;
  EXPECT_EQ(db["network"].value("gateway", ""), "10.99.0.1");
  EXPECT_TRUE(link_exists(iface)) << iface;

  // Inside: eth0 with the address, the network's DNS server, its own name in /etc/hosts.
  r = d.cli({"ct", "exec", "db", "ip", "-4", "addr", "show", "eth0"});
  EXPECT_NE(r.out.find(ip + "/24"), std::string::npos) << r.out << r.err;
  EXPECT_EQ(d.cli({"ct", "exec", "db", "cat", "/etc/resolv.conf"}).out,
            "nameserver 10.99.0.1\nsearch vireo0\n");
  EXPECT_NE(d.cli({"ct", "exec", "db", "cat", "/etc/hosts"}).out.find(ip + "\tdb"),
            std::string::npos);

  // A second container pings the first by address, and resolves its name through vireo-netd.
  r = d.cli({"ct", "run", "--rm", "--name", "client", "busybox:1", "sh", "-c",
             "ping -c 1 -W 5 " + ip + " >/dev/null && echo pinged; nslookup db 10.99.0.1"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("pinged"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(ip), std::string::npos) << "db resolved: " << r.out;

  // A restart keeps the address; removal frees the interface and the address.
  r = d.cli({"ct", "restart", "-t", "1", "db"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(inspect("db")["network"].value("ip", ""), ip);
  r = d.cli({"ct", "run", "--rm", "busybox:1", "ping", "-c", "1", "-W", "5", ip});
  EXPECT_EQ(r.exit_code, 0) << "after restart: " << r.out << r.err;
  ASSERT_EQ(d.cli({"ct", "rm", "-f", "db"}).exit_code, 0);
  EXPECT_FALSE(link_exists(iface));
  r = d.cli({"ct", "run", "-d", "--name", "next", "--ip", ip, "busybox:1", "sleep", "1000"});
  EXPECT_EQ(r.exit_code, 0) << "the freed address is free again: " << r.err;
}

TEST_F(ContainerNetworkTest, NetworkNoneAndHostHaveNoInterface) {
  auto r = d.cli({"ct", "run", "--rm", "--net", "none", "busybox:1", "ip", "-o", "link"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("eth0"), std::string::npos) << r.out;
  r = d.cli({"ct", "run", "-d", "--name", "iso", "--net", "none", "busybox:1", "sleep", "100"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(inspect("iso")["network"].is_null());
}

TEST_F(ContainerNetworkTest, PublishedPortsReachTheContainerFromTheHost) {
  const uint16_t port = free_port();
  ASSERT_NE(port, 0);
  auto r = d.cli({"ct", "run", "-d", "--name", "web", "-p", fmt::format("127.0.0.1:{}:8000", port),
                  "busybox:1", "sh", "-c",
                  "mkdir -p /tmp/www && echo hello-from-web > /tmp/www/index.html && "
                  "exec httpd -f -p 8000 -h /tmp/www"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string reply = exchange_when_up(port, "GET /index.html HTTP/1.0\r\n\r\n");
  EXPECT_NE(reply.find("hello-from-web"), std::string::npos) << reply;
  Json web = inspect("web");
  ASSERT_EQ(web["config"]["ports"].size(), 1u);
  EXPECT_EQ(web["config"]["ports"][0].value("host_port", 0), port);

  // The ports change while it runs: the new one answers at once, the old one is closed, an
  // established connection stays.
  const uint16_t moved = free_port();
  Fd held(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in at{
      .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = {htonl(INADDR_LOOPBACK)}};
  ASSERT_EQ(::connect(held.get(), reinterpret_cast<sockaddr*>(&at), sizeof at), 0);
  r = d.cli({"ct", "update", "-p", fmt::format("127.0.0.1:{}:8000", moved), "web"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  reply = exchange(moved, "GET /index.html HTTP/1.0\r\n\r\n");
  EXPECT_NE(reply.find("hello-from-web"), std::string::npos) << reply;
  EXPECT_EQ(exchange(port, "GET / HTTP/1.0\r\n\r\n"), "") << "the old port is closed";
  const std::string get = "GET /index.html HTTP/1.0\r\n\r\n";
  ASSERT_EQ(::send(held.get(), get.data(), get.size(), MSG_NOSIGNAL), ssize_t(get.size()));
  char buf[256] = {};
  EXPECT_GT(::recv(held.get(), buf, sizeof buf - 1, 0), 0) << "the established connection";
  EXPECT_EQ(inspect("web")["config"]["ports"][0].value("host_port", 0), moved);
  // A port the host holds is refused and the old set stays.
  Fd taken(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in any{.sin_family = AF_INET, .sin_port = 0, .sin_addr = {htonl(INADDR_LOOPBACK)}};
  ASSERT_EQ(::bind(taken.get(), reinterpret_cast<sockaddr*>(&any), sizeof any), 0);
  ASSERT_EQ(::listen(taken.get(), 1), 0);
  socklen_t len = sizeof any;
  ::getsockname(taken.get(), reinterpret_cast<sockaddr*>(&any), &len);
  expect_refused(d,
                 {"ct", "update", "-p", fmt::format("127.0.0.1:{}:8000", moved), "-p",
                  fmt::format("127.0.0.1:{}:8000", ntohs(any.sin_port)), "web"},
                 "already in use");
  reply = exchange(moved, "GET /index.html HTTP/1.0\r\n\r\n");
  EXPECT_NE(reply.find("hello-from-web"), std::string::npos) << "kept: " << reply;
  EXPECT_EQ(inspect("web")["config"]["ports"].size(), 1u);
  ASSERT_EQ(d.cli({"ct", "update", "--no-ports", "web"}).exit_code, 0);
  EXPECT_EQ(exchange(moved, "GET / HTTP/1.0\r\n\r\n"), "");
  ASSERT_EQ(d.cli({"ct", "update", "-p", fmt::format("127.0.0.1:{}:8000", port), "web"}).exit_code,
            0);
  EXPECT_NE(exchange_when_up(port, get).find("hello-from-web"), std::string::npos);

  // The same host port again: refused at create, naming the container that has it.
  expect_refused(d, {"ct", "run", "-d", "-p", fmt::format("{}:80", port), "busybox:1", "true"},
                 "already published by container web");
  // A port something else on the host holds: the start fails with one line.
  ASSERT_EQ(d.cli({"ct", "rm", "-f", "web"}).exit_code, 0);
  Fd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  ::setsockopt(holder.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = {htonl(INADDR_ANY)}};
  ASSERT_EQ(::bind(holder.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(holder.get(), 1), 0);
  r = d.cli({"ct", "run", "-d", "--name", "clash", "-p", fmt::format("{}:80", port), "busybox:1",
             "sleep", "100"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already in use"), std::string::npos) << r.err;
  EXPECT_NE(inspect("clash").value("state", ""), "running");
}

// A namespace on an uplink network plays a machine of the LAN: published ports reach the
// container through vireo-netd's DNAT at the uplink's address, not only through the host.
TEST_F(ContainerNetworkTest, PublishedPortsAreForwardedFromTheUplink) {
  const std::string tag = std::to_string(::getpid() % 100000);
  const std::string ns = "vctlan" + tag, veth = "vctu" + tag;
  struct Cleanup {
    std::string ns, veth;
    ~Cleanup() {
      (void)run({"ip", "link", "del", veth});
      (void)run({"ip", "netns", "del", ns});
    }
  } cleanup{ns, veth};
  auto ok = [](const std::vector<std::string>& argv) {
    auto r = run(argv);
    EXPECT_EQ(r.exit_code, 0) << fmt::format("{}", fmt::join(argv, " ")) << ": " << r.err;
    return r.exit_code == 0;
  };
  ASSERT_TRUE(ok({"ip", "netns", "add", ns}));
  ASSERT_TRUE(ok({"ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "p"}));
  ASSERT_TRUE(ok({"ip", "link", "set", veth + "p", "netns", ns}));
  ASSERT_TRUE(ok({"ip", "link", "set", veth, "up"}));
  ASSERT_TRUE(ok({"ip", "-n", ns, "addr", "add", "10.78.0.50/24", "dev", veth + "p"}));
  ASSERT_TRUE(ok({"ip", "-n", ns, "link", "set", veth + "p", "up"}));
  auto r = d.cli({"net", "create", "up", "--subnet", "10.78.0.0/24", "--uplink"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(d.cli({"net", "port", "add", "up", "--iface", veth}).exit_code, 0);

  const uint16_t port = free_port();
  r = d.cli({"ct", "run", "-d", "--name", "web", "-p", fmt::format("{}:8000", port), "busybox:1",
             "sh", "-c",
             "mkdir -p /tmp/www && echo via-uplink > /tmp/www/index.html && "
             "exec httpd -f -p 8000 -h /tmp/www"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string ip = inspect("web")["network"].value("ip", "");
  Json forwards = json({"net", "forward", "ls", "vireo0"});
  ASSERT_EQ(forwards.size(), 1u) << forwards.dump();
  EXPECT_EQ(forwards[0].value("to", ""), ip + ":8000");

  // The LAN's first packets may wait for ARP and the service to listen: ask until it answers.
  const std::string url = fmt::format("http://10.78.0.1:{}/index.html", port);
  ProcessResult got;
  for (auto end = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < end;) {
    got = run({"ip", "netns", "exec", ns, "curl", "-s", "--max-time", "2", url});
    if (got.exit_code == 0 && got.out.find("via-uplink") != std::string::npos) break;
  }
  EXPECT_NE(got.out.find("via-uplink"), std::string::npos) << got.out << got.err;

  // A port published on 127.0.0.1 only is not forwarded; removal drops the forward.
  r = d.cli({"ct", "run", "-d", "--name", "local", "-p",
             fmt::format("127.0.0.1:{}:80", free_port()), "busybox:1", "sleep", "100"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json({"net", "forward", "ls", "vireo0"}).size(), 1u);
  ASSERT_EQ(d.cli({"ct", "rm", "-f", "web"}).exit_code, 0);
  EXPECT_TRUE(json({"net", "forward", "ls", "vireo0"}).empty());
}

TEST_F(ContainerNetworkTest, BadNetworkInputIsRefusedAndLeavesNothing) {
  const size_t before = container_count();
  expect_refused(d, {"ct", "run", "-d", "-p", "80", "busybox:1", "true"}, "[IP:]HOST:CTR");
  expect_refused(d, {"ct", "run", "-d", "-p", "70000:80", "busybox:1", "true"}, "70000");
  expect_refused(d, {"ct", "run", "-d", "-p", "8080:80/sctp", "busybox:1", "true"}, "sctp");
  expect_refused(d, {"ct", "run", "-d", "-p", "1.2.3:8080:80", "busybox:1", "true"}, "1.2.3");
  expect_refused(d, {"ct", "run", "-d", "-p", "8080:80", "-p", "8080:81", "busybox:1", "true"},
                 "published twice");
  expect_refused(d, {"ct", "run", "-d", "--net", "none", "-p", "8080:80", "busybox:1", "true"},
                 "needs a Vireo network");
  expect_refused(d, {"ct", "run", "-d", "--net", "nosuch", "busybox:1", "true"},
                 "network nosuch not found");
  expect_refused(d, {"ct", "run", "-d", "--ip", "10.98.0.5", "busybox:1", "true"}, "10.98.0.5");
  expect_refused(d, {"ct", "run", "-d", "--net", "bad/name", "busybox:1", "true"}, "bad/name");
  EXPECT_EQ(container_count(), before);

  // An address taken by another container is refused; the first keeps it.
  auto r =
      d.cli({"ct", "run", "-d", "--name", "a", "--ip", "10.99.0.77", "busybox:1", "sleep", "100"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_refused(d, {"ct", "run", "-d", "--ip", "10.99.0.77", "busybox:1", "true"}, "10.99.0.77");
  EXPECT_EQ(inspect("a")["network"].value("ip", ""), "10.99.0.77");
  EXPECT_EQ(container_count(), before + 1);
}

}  // namespace
}  // namespace vireo::testing
