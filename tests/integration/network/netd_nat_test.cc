// vireo-netd NAT between real namespaces: a namespace on a "nat" network reaches a remote
// namespace on the uplink network through masquerade (ICMP, UDP, TCP) and the remote sees the
// uplink's gateway address; a port forward on the uplink address reaches a server inside.
#include <gtest/gtest.h>

#include <thread>

#include "netd_fixture.h"

namespace vireo::net::testing {
namespace {

// Answers one UDP datagram on port 7000 and prints who sent it.
constexpr const char* kUdpServer = R"(
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 7000))
s.settimeout(15)
data, peer = s.recvfrom(100)
s.sendto(b"pong", peer)
print(peer[0], peer[1])
)";

// Sends until a reply arrives (the server may not be bound yet), at most 10 s.
constexpr const char* kUdpClient = R"(
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.3)
end = time.time() + 10
while time.time() < end:
    s.sendto(b"ping", (sys.argv[1], 7000))
    try:
        print(s.recvfrom(100)[0].decode()); sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
)";

// Sends to a closed UDP port: the remote's ICMP port unreachable, translated back through NAT,
// makes the connected socket fail with ECONNREFUSED.
constexpr const char* kUdpRefused = R"(
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
s.connect((sys.argv[1], 7999))
end = time.time() + 10
while time.time() < end:
    try:
        s.send(b"x")
        s.recv(10)
    except ConnectionRefusedError:
        print("refused"); sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
)";

class NetdNatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    lan_ = lab_.add_namespace("lan");
    remote_ = lab_.add_namespace("rem");
    std::string hl = lab_.add_host(lan_, "10.87.0.2/24", "hl");
    // The remote has no route back to 10.87.0.0/24: only NAT lets replies reach lan.
    std::string hr = lab_.add_host(remote_, "192.168.87.2/24", "hr");
    lab_.in(lan_, {"ip", "route", "add", "default", "via", "10.87.0.1"});
    netd_.call({{"op", "network.create"},
                {"name", "lan"},
                {"subnet", "10.87.0.0/24"},
                {"gateway", "10.87.0.1"},
                {"nat", true}});
    netd_.call({{"op", "network.create"},
                {"name", "wan"},
                {"subnet", "192.168.87.0/24"},
                {"gateway", "192.168.87.1"},
                {"uplink", true}});
    netd_.call({{"op", "port.attach"}, {"network", "lan"}, {"iface", hl}});
    netd_.call({{"op", "port.attach"}, {"network", "wan"}, {"iface", hr}});
  }

  Lab lab_;
  Netd netd_{lab_.dir()};
  std::string lan_, remote_;
};

TEST_F(NetdNatTest, MasqueradedTrafficReachesRemoteWhichSeesNatAddress) {
  ASSERT_TRUE(lab_.ping_until(lan_, "192.168.87.2"));
  ProcessResult server;
  std::thread t([&] { server = lab_.in(remote_, {"python3", "-c", kUdpServer}, 20000); });
  ProcessResult client = lab_.in(lan_, {"python3", "-c", kUdpClient, "192.168.87.2"}, 20000);
  t.join();
  EXPECT_TRUE(client.ok()) << client.out << client.err;
  EXPECT_NE(client.out.find("pong"), std::string::npos);
  ASSERT_TRUE(server.ok()) << server.err;
  EXPECT_EQ(server.out.substr(0, server.out.find(' ')), "192.168.87.1") << server.out;

  // TCP with offloads: checksums of GSO frames are fixed incrementally.
  ASSERT_TRUE(lab_.in(remote_, {"iperf3", "-s", "-D", "-1", "-p", "5301"}).ok());
  ProcessResult tcp;
  for (auto end = Clock::now() + std::chrono::seconds(10); Clock::now() < end;) {
    tcp = lab_.in(lan_, {"iperf3", "-c", "192.168.87.2", "-p", "5301", "-t", "2", "-J"}, 30000);
    if (tcp.ok()) break;
  }
  ASSERT_TRUE(tcp.ok()) << tcp.out << tcp.err;
  double bps = (*parse_json(tcp.out))["end"]["sum_received"]["bits_per_second"].get<double>();
  EXPECT_GT(bps, 1e7);
  std::cout << "iperf3 through NAT: " << bps / 1e9 << " Gbit/s\n";

  bool natted = false;
  Json connections = netd_.call({{"op", "conntrack.list"}})["connections"];
  for (const Json& c : connections)
    if (c.contains("nat") && c["nat"]["src"] == "192.168.87.1" && c["src"] == "10.87.0.2")
      natted = true;
  EXPECT_TRUE(natted) << connections.dump();
  // ICMP errors about translated packets find their way back (the port unreachable quotes
  // the translated packet; lan sees its own).
  ProcessResult refused = lab_.in(lan_, {"python3", "-c", kUdpRefused, "192.168.87.2"}, 20000);
  EXPECT_TRUE(refused.ok()) << refused.out << refused.err;
  // The lan's address never shows on the remote side: it cannot reach lan by itself.
  EXPECT_FALSE(lab_.ping_once(remote_, "10.87.0.2"));
}

TEST_F(NetdNatTest, PortForwardReachesServerInsideNetwork) {
  netd_.call(
      {{"op", "forward.add"}, {"network", "lan"}, {"host_port", 8080}, {"to", "10.87.0.2:5302"}});
  Json list = netd_.call({{"op", "forward.list"}})["forwards"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["to"], "10.87.0.2:5302");
  ASSERT_TRUE(lab_.in(lan_, {"iperf3", "-s", "-D", "-1", "-p", "5302"}).ok());
  // The remote's first SYN may wait for the router to resolve lan's address.
  lab_.ping_until(remote_, "192.168.87.1");
  ProcessResult c;
  for (auto end = Clock::now() + std::chrono::seconds(10); Clock::now() < end;) {
    c = lab_.in(remote_, {"iperf3", "-c", "192.168.87.1", "-p", "8080", "-t", "1", "-J"}, 30000);
    if (c.ok()) break;
  }
  ASSERT_TRUE(c.ok()) << c.out << c.err;
  EXPECT_EQ((*parse_json(c.out))["start"]["connected"][0]["remote_host"], "192.168.87.1");
  // A port nobody forwards stays closed.
  ProcessResult closed = lab_.in(remote_, {"iperf3", "-c", "192.168.87.1", "-p", "8081", "-t", "1",
                                           "--connect-timeout", "1000"});
  EXPECT_FALSE(closed.ok());
  // Hairpin: a neighbour on lan itself reaches the forward at the uplink address too, and the
  // server sees it coming from the router (lan's gateway), so its answers go back through it.
  std::string neighbour = lab_.add_namespace("nb");
  netd_.call({{"op", "port.attach"},
              {"network", "lan"},
              {"iface", lab_.add_host(neighbour, "10.87.0.3/24", "hn")}});
  lab_.in(neighbour, {"ip", "route", "add", "default", "via", "10.87.0.1"});
  ASSERT_TRUE(lab_.in(lan_, {"iperf3", "-s", "-D", "-1", "-p", "5302"}).ok());
  ProcessResult hairpin;
  for (auto end = Clock::now() + std::chrono::seconds(10); Clock::now() < end;) {
    hairpin =
        lab_.in(neighbour, {"iperf3", "-c", "192.168.87.1", "-p", "8080", "-t", "1", "-J"}, 30000);
    if (hairpin.ok()) break;
  }
  ASSERT_TRUE(hairpin.ok()) << hairpin.out << hairpin.err;
  EXPECT_EQ((*parse_json(hairpin.out))["start"]["connected"][0]["remote_host"], "192.168.87.1");
}

TEST_F(NetdNatTest, ForwardValidationAndPersistence) {
  for (Json bad :
       {Json{{"network", "lan"}, {"host_port", 80}, {"to", "10.99.0.2:80"}},
        Json{{"network", "lan"}, {"host_port", 0}, {"to", "10.87.0.2:80"}},
        Json{{"network", "lan"}, {"host_port", 80}, {"to", "10.87.0.2"}},
        Json{{"network", "nope"}, {"host_port", 80}, {"to", "10.87.0.2:80"}},
        Json{
            {"network", "lan"}, {"host_port", 80}, {"to", "10.87.0.2:80"}, {"protocol", "sctp"}}}) {
    bad["op"] = "forward.add";
    Json r = netd_.call(bad, false);
    EXPECT_FALSE(r["ok"].get<bool>()) << bad.dump();
    EXPECT_EQ(r["error"].get<std::string>().find('\n'), std::string::npos);
  }
  netd_.call({{"op", "forward.add"},
              {"network", "lan"},
              {"host_port", "5353"},
              {"protocol", "udp"},
              {"to", "10.87.0.2:53"}});
  EXPECT_FALSE(netd_
                   .call({{"op", "forward.add"},
                          {"network", "lan"},
                          {"host_port", 5353},
                          {"protocol", "udp"},
                          {"to", "10.87.0.3:53"}},
                         false)["ok"]
                   .get<bool>());
  netd_.stop();
  netd_.start();
  Json list = netd_.call({{"op", "forward.list"}})["forwards"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["protocol"], "udp");
  Json nets = netd_.call({{"op", "network.list"}})["networks"];
  ASSERT_EQ(nets.size(), 2u);
  EXPECT_TRUE(nets[0].value("nat", false) || nets[1].value("nat", false));
  netd_.call({{"op", "forward.delete"}, {"host_port", 5353}, {"protocol", "udp"}});
  EXPECT_TRUE(netd_.call({{"op", "forward.list"}})["forwards"].empty());
}

}  // namespace
}  // namespace vireo::net::testing
