// vireo-netd as a router between its networks: gateway ARP and ICMP echo, forwarding with TTL
// handling, ICMP errors and static routes, between real network namespaces.
#include <gtest/gtest.h>

#include <thread>

#include "netd_fixture.h"

namespace vireo::net::testing {
namespace {

class NetdRouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = lab_.add_namespace("a");
    b_ = lab_.add_namespace("b");
    std::string ha = lab_.add_host(a_, "10.84.0.2/24", "ha");
    std::string hb = lab_.add_host(b_, "10.85.0.2/24", "hb");
    lab_.in(a_, {"ip", "route", "add", "default", "via", "10.84.0.1"});
    lab_.in(b_, {"ip", "route", "add", "default", "via", "10.85.0.1"});
    netd_.call({{"op", "network.create"},
                {"name", "one"},
                {"subnet", "10.84.0.0/24"},
                {"gateway", "10.84.0.1"}});
    netd_.call({{"op", "network.create"},
                {"name", "two"},
                {"subnet", "10.85.0.0/24"},
                {"gateway", "10.85.0.1"}});
    netd_.call({{"op", "port.attach"}, {"network", "one"}, {"iface", ha}});
    netd_.call({{"op", "port.attach"}, {"network", "two"}, {"iface", hb}});
  }

  Lab lab_;
  Netd netd_{lab_.dir()};
  std::string a_, b_;
};

TEST_F(NetdRouterTest, GatewayAnswersArpAndPing) {
  EXPECT_TRUE(lab_.ping_until(a_, "10.84.0.1"));
  ProcessResult neigh = lab_.in(a_, {"ip", "neigh", "show", "10.84.0.1"});
  EXPECT_NE(neigh.out.find("02:76:0a:54:00:01"), std::string::npos) << neigh.out;
  // The other network's gateway is an address of the router too.
  EXPECT_TRUE(lab_.ping_until(a_, "10.85.0.1"));
}

TEST_F(NetdRouterTest, RoutesBetweenNetworksAndCarriesTcp) {
  // The first packets may be lost while the router resolves b by ARP.
  ASSERT_TRUE(lab_.ping_until(a_, "10.85.0.2"));
  ProcessResult ping = lab_.in(a_, {"ping", "-c", "1", "-W", "2", "10.85.0.2"});
  EXPECT_NE(ping.out.find("ttl=63"), std::string::npos) << ping.out;
  ASSERT_TRUE(lab_.in(b_, {"iperf3", "-s", "-D", "-1", "-B", "10.85.0.2"}).ok());
  ProcessResult client;
  for (auto end = Clock::now() + std::chrono::seconds(10); Clock::now() < end;) {
    client = lab_.in(a_, {"iperf3", "-c", "10.85.0.2", "-t", "2", "-J"}, 30000);
    if (client.ok()) break;
  }
  ASSERT_TRUE(client.ok()) << client.out << client.err;
  double bps = (*parse_json(client.out))["end"]["sum_received"]["bits_per_second"].get<double>();
  EXPECT_GT(bps, 1e8);
  std::cout << "iperf3 routed by vireo-netd: " << bps / 1e9 << " Gbit/s\n";
}

TEST_F(NetdRouterTest, ExpiredTtlAndUnknownDestinationGetIcmpErrors) {
  ASSERT_TRUE(lab_.ping_until(a_, "10.85.0.2"));
  ProcessResult ttl = lab_.in(a_, {"ping", "-c", "1", "-W", "2", "-t", "1", "10.85.0.2"});
  EXPECT_NE(ttl.out.find("Time to live exceeded"), std::string::npos) << ttl.out;
  ProcessResult unreachable = lab_.in(a_, {"ping", "-c", "1", "-W", "2", "10.99.0.1"});
  EXPECT_NE(unreachable.out.find("Unreachable"), std::string::npos) << unreachable.out;
  Json drops = netd_.call({{"op", "stats"}})["drops"];
  EXPECT_GE(drops.value("ttl_exceeded", 0), 1);
  EXPECT_GE(drops.value("no_route", 0), 1);
}

TEST_F(NetdRouterTest, StaticRouteSendsTrafficThroughNextHop) {
  // b plays a router for 10.200.0.0/24, which it holds on its loopback.
  lab_.in(b_, {"ip", "addr", "add", "10.200.0.1/32", "dev", "lo"});
  netd_.call({{"op", "route.add"}, {"destination", "10.200.0.0/24"}, {"via", "10.85.0.2"}});
  EXPECT_EQ(netd_.call({{"op", "route.list"}})["routes"].size(), 1u);
  EXPECT_TRUE(lab_.ping_until(a_, "10.200.0.1"));
  EXPECT_FALSE(
      netd_
          .call({{"op", "route.add"}, {"destination", "10.201.0.0/24"}, {"via", "10.99.0.1"}},
                false)["ok"]
          .get<bool>());
  netd_.call({{"op", "route.delete"}, {"destination", "10.200.0.0/24"}});
  EXPECT_FALSE(lab_.ping_once(a_, "10.200.0.1"));
}

TEST_F(NetdRouterTest, FirewallDeniesPortAllowsOtherAndPassesRepliesStatefully) {
  ASSERT_TRUE(lab_.ping_until(a_, "10.85.0.2"));
  ASSERT_TRUE(lab_.ping_until(b_, "10.84.0.2"));
  // Network two takes nothing in except TCP 5202; it may still reach out.
  netd_.call({{"op", "firewall.policy"}, {"network", "two"}, {"in", "deny"}});
  netd_.call({{"op", "firewall.rule.add"},
              {"network", "two"},
              {"direction", "in"},
              {"protocol", "tcp"},
              {"port", "5202"},
              {"action", "allow"}});
  EXPECT_FALSE(lab_.ping_once(a_, "10.85.0.2"));
  EXPECT_TRUE(lab_.ping_until(b_, "10.84.0.2"));  // echo replies pass as established
  ASSERT_TRUE(lab_.in(b_, {"iperf3", "-s", "-D", "-1", "-p", "5202"}).ok());
  ASSERT_TRUE(lab_.in(b_, {"iperf3", "-s", "-D", "-1", "-p", "5203"}).ok());
  ProcessResult allowed;
  for (auto end = Clock::now() + std::chrono::seconds(10); Clock::now() < end;) {
    allowed = lab_.in(a_, {"iperf3", "-c", "10.85.0.2", "-p", "5202", "-t", "1"}, 20000);
    if (allowed.ok()) break;
  }
  EXPECT_TRUE(allowed.ok()) << allowed.out << allowed.err;
  ProcessResult denied = lab_.in(
      a_, {"iperf3", "-c", "10.85.0.2", "-p", "5203", "-t", "1", "--connect-timeout", "1000"});
  EXPECT_FALSE(denied.ok());
  Json rules = netd_.call({{"op", "firewall.rule.list"}, {"network", "two"}})["rules"];
  ASSERT_EQ(rules.size(), 1u);
  EXPECT_GE(rules[0]["hits"].get<uint64_t>(), 1u);
  EXPECT_FALSE(netd_.call({{"op", "conntrack.list"}})["connections"].empty());
  EXPECT_GE(netd_.call({{"op", "stats"}})["drops"].value("firewall_denied", 0), 1);
}

// Reconfiguring netd while a TCP flow crosses the router and a stateful firewall — a port
// attached and detached, firewall rules added and removed, a route added and deleted — drops
// nothing of the flow: every half-second interval of it carries data.
TEST_F(NetdRouterTest, ReconfigurationKeepsAnEstablishedFlow) {
  ASSERT_TRUE(lab_.ping_until(a_, "10.85.0.2"));
  // Network one takes nothing in but replies: the flow's ACKs reach a only while the connection
  // tracker keeps the flow as established.
  netd_.call({{"op", "firewall.policy"}, {"network", "one"}, {"in", "deny"}});
  ASSERT_TRUE(lab_.in(b_, {"iperf3", "-s", "-D", "-1", "-p", "5204"}).ok());
  ProcessResult flow;
  std::thread client([&] {
    for (auto end = Clock::now() + std::chrono::seconds(10); Clock::now() < end;) {
      flow = lab_.in(a_, {"iperf3", "-c", "10.85.0.2", "-p", "5204", "-t", "4", "-i", "0.5", "-J"},
                     30000);
      if (flow.ok()) break;
    }
  });
  // Once the flow is in the connection tracker, change everything around it.
  bool tracked = false;
  for (auto end = Clock::now() + std::chrono::seconds(10); !tracked && Clock::now() < end;) {
    const Json list = netd_.call({{"op", "conntrack.list"}});
    for (const auto& c : list["connections"])
      tracked = tracked || (c.value("dport", 0) == 5204 && c.value("state", "") == "established");
    if (!tracked) std::this_thread::sleep_for(std::chrono::milliseconds(20));  // no event to await
  }
  EXPECT_TRUE(tracked) << netd_.call({{"op", "conntrack.list"}}).dump();
  std::string c = lab_.add_namespace("c");
  std::string hc = lab_.add_host(c, "10.84.0.3/24", "hc");
  netd_.call({{"op", "port.attach"}, {"network", "one"}, {"iface", hc}});
  Json rule = netd_.call({{"op", "firewall.rule.add"},
                          {"network", "two"},
                          {"direction", "in"},
                          {"protocol", "udp"},
                          {"port", "9999"},
                          {"action", "deny"}});
  netd_.call({{"op", "route.add"}, {"destination", "10.202.0.0/24"}, {"via", "10.85.0.2"}});
  EXPECT_TRUE(lab_.ping_until(c, "10.84.0.1")) << "the new port works";
  netd_.call({{"op", "firewall.rule.delete"}, {"network", "two"}, {"id", rule["id"]}});
  netd_.call({{"op", "route.delete"}, {"destination", "10.202.0.0/24"}});
  netd_.call({{"op", "port.detach"}, {"name", hc}});
  client.join();
  ASSERT_TRUE(flow.ok()) << flow.out << flow.err;
  Json result = *parse_json(flow.out);
  int intervals = 0;
  for (const auto& i : result["intervals"]) {
    ++intervals;
    EXPECT_GT(i["sum"]["bytes"].get<uint64_t>(), 0u) << "a stalled interval: " << i.dump();
  }
  EXPECT_GE(intervals, 7);
  std::cout << "flow through reconfiguration: "
            << result["end"]["sum_received"]["bits_per_second"].get<double>() / 1e9 << " Gbit/s\n";
}

TEST(NetdDhcpTest, ClientInNamespaceGetsLeaseFromNetwork) {
  Lab lab;
  Netd netd(lab.dir());
  std::string c = lab.add_namespace("c");
  std::string hc = lab.add_host(c, "", "hc");
  netd.call({{"op", "network.create"},
             {"name", "dyn"},
             {"subnet", "10.86.0.0/24"},
             {"gateway", "10.86.0.1"},
             {"dhcp", true}});
  netd.call({{"op", "port.attach"}, {"network", "dyn"}, {"iface", hc}});
  // busybox udhcpc: -s /bin/true only reports the lease, the test configures nothing.
  ProcessResult r = lab.in(c, {"busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T",
                               "1", "-s", "/bin/true"});
  EXPECT_TRUE(r.ok()) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("lease of 10.86.0.2 obtained"), std::string::npos)
      << r.out << r.err;
  Json leases = netd.call({{"op", "dhcp.leases"}, {"network", "dyn"}})["leases"];
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0]["ip"], "10.86.0.2");
  // The lease is persisted: after a restart of netd it is still the client's.
  netd.stop();
  netd.start();
  Json kept = netd.call({{"op", "dhcp.leases"}, {"network", "dyn"}})["leases"];
  ASSERT_EQ(kept.size(), 1u) << kept.dump();
  EXPECT_EQ(kept[0]["ip"], "10.86.0.2");
  EXPECT_EQ(kept[0]["mac"], leases[0]["mac"]);
  EXPECT_EQ(kept[0]["static"], false);
}

}  // namespace
}  // namespace vireo::net::testing
