// vireo-netd as an L2 switch between real network namespaces.
#include <gtest/gtest.h>

#include "netd_fixture.h"

namespace vireo::net::testing {
namespace {

Json network(const std::string& name, const std::string& subnet, int vlan = 0) {
  Json j{{"op", "network.create"}, {"name", name}, {"subnet", subnet}};
  if (vlan) j["vlan"] = vlan;
  return j;
}

Json attach(const std::string& net, const std::string& iface) {
  return Json{{"op", "port.attach"}, {"network", net}, {"iface", iface}};
}

TEST(NetdSwitchTest, TwoNamespacesPingAndRunIperf) {
  Lab lab;
  Netd netd(lab.dir());
  std::string a = lab.add_namespace("a"), b = lab.add_namespace("b");
  std::string ha = lab.add_host(a, "10.77.0.1/24", "ha");
  std::string hb = lab.add_host(b, "10.77.0.2/24", "hb");
  netd.call(network("lan", "10.77.0.0/24"));
  netd.call(attach("lan", ha));
  netd.call(attach("lan", hb));
  ASSERT_TRUE(lab.ping_until(a, "10.77.0.2"));

  Json fdb = netd.call({{"op", "fdb.dump"}, {"network", "lan"}})["fdb"];
  EXPECT_EQ(fdb.size(), 2u) << fdb.dump();

  ProcessResult server = lab.in(b, {"iperf3", "-s", "-D", "-1", "-B", "10.77.0.2"});
  ASSERT_TRUE(server.ok()) << server.err;
  ProcessResult client;
  // The daemonised server may need a moment to listen: retry until the deadline.
  for (auto end = Clock::now() + std::chrono::seconds(10); Clock::now() < end;) {
    client = lab.in(a, {"iperf3", "-c", "10.77.0.2", "-t", "2", "-J"}, 30000);
    if (client.ok()) break;
  }
  ASSERT_TRUE(client.ok()) << client.out << client.err;
  Json report = *parse_json(client.out);
  double bps = report["end"]["sum_received"]["bits_per_second"].get<double>();
  EXPECT_GT(bps, 1e8);
  std::cout << "iperf3 through vireo-netd: " << bps / 1e9 << " Gbit/s\n";

  Json ports = netd.call({{"op", "port.list"}})["ports"];
  ASSERT_EQ(ports.size(), 2u);
  // Each port is polled by its own worker: the data and the ACKs crossed threads.
  EXPECT_NE(ports[0]["worker"], ports[1]["worker"]) << ports.dump();
  // The client's port received the data, the server's port the ACKs.
  uint64_t most = 0;
  for (const Json& p : ports) most = std::max(most, p["stats"]["rx_bytes"].get<uint64_t>());
  EXPECT_GT(most, 10'000'000u);
}

using Bytes = std::vector<uint8_t>;

// An ARP request "who has target, tell 10.78.0.10" from 02:00:00:00:00:aa, tagged with vlan.
Bytes arp_request(uint16_t vlan, uint8_t target_last) {
  Bytes f = {0xff,
             0xff,
             0xff,
             0xff,
             0xff,
             0xff,
             0x02,
             0,
             0,
             0,
             0,
             0xaa,
             0x81,
             0x00,
             uint8_t(vlan >> 8),
             uint8_t(vlan),
             0x08,
             0x06,
             0,
             1,
             8,
             0,
             6,
             4,
             0,
             1,
             0x02,
             0,
             0,
             0,
             0,
             0xaa,
             10,
             78,
             0,
             10,
             0,
             0,
             0,
             0,
             0,
             0,
             10,
             78,
             0,
             target_last};
  f.resize(64, 0);
  return f;
}

// An ARP reply from sender_last, tagged with vlan.
auto arp_reply(uint16_t vlan, uint8_t sender_last) {
  return [=](const Bytes& f) {
    return f.size() >= 46 && f[12] == 0x81 && f[13] == 0 && (f[15] | (f[14] & 0x0f) << 8) == vlan &&
           f[16] == 0x08 && f[17] == 0x06 && f[25] == 2 && f[32] == 10 && f[33] == 78 &&
           f[35] == sender_last;
  };
}

TEST(NetdSwitchTest, VlansIsolateNetworksAndTrunkCarriesBoth) {
  Lab lab;
  Netd netd(lab.dir());
  std::string a = lab.add_namespace("a"), b = lab.add_namespace("b"), c = lab.add_namespace("c");
  // a and c share a subnet on the wire, but sit in different networks: they must not meet.
  std::string ha = lab.add_host(a, "10.78.0.1/24", "ha");
  std::string hb = lab.add_host(b, "10.78.0.2/24", "hb");
  std::string hc = lab.add_host(c, "10.78.0.3/24", "hc");
  // The kernel here has no 802.1Q devices, so the test itself is the trunk's peer.
  auto [trunk, peer] = lab.add_wire("tr");
  RawSocket wire(peer);
  netd.call(network("blue", "10.78.0.0/24", 10));
  netd.call(network("red", "10.79.0.0/24", 20));
  netd.call(attach("blue", ha));
  netd.call(attach("blue", hb));
  netd.call(attach("red", hc));
  netd.call({{"op", "port.attach"}, {"iface", trunk}, {"trunk", {"blue", "red"}}});

  ASSERT_TRUE(lab.ping_until(a, "10.78.0.2"));
  EXPECT_FALSE(lab.ping_once(a, "10.78.0.3"));
  // Tagged 10 on the trunk reaches blue, the reply comes back tagged 10; likewise red on 20.
  wire.send(arp_request(10, 1));
  EXPECT_TRUE(wire.receive_until(arp_reply(10, 1), std::chrono::seconds(3)))
      << netd.call({{"op", "port.list"}}).dump() << netd.call({{"op", "stats"}}).dump();
  wire.send(arp_request(20, 3));
  EXPECT_TRUE(wire.receive_until(arp_reply(20, 3), std::chrono::seconds(3)))
      << netd.call({{"op", "port.list"}}).dump() << netd.call({{"op", "stats"}}).dump();
  // a is not in red: no answer on VLAN 20. VLAN 30 is not carried at all.
  wire.send(arp_request(20, 1));
  EXPECT_FALSE(wire.receive_until(arp_reply(20, 1), std::chrono::milliseconds(500)));
  wire.send(arp_request(30, 1));
  EXPECT_FALSE(wire.receive_until(arp_reply(30, 1), std::chrono::milliseconds(500)));
  EXPECT_GE(netd.call({{"op", "stats"}})["drops"].value("vlan_not_allowed", 0), 1);
}

TEST(NetdSwitchTest, HostileFramesAreCountedAndForwardingGoesOn) {
  Lab lab;
  Netd netd(lab.dir());
  std::string a = lab.add_namespace("a"), b = lab.add_namespace("b");
  std::string ha = lab.add_host(a, "10.83.0.1/24", "ha");
  std::string hb = lab.add_host(b, "10.83.0.2/24", "hb");
  auto [bad, peer] = lab.add_wire("bad");
  RawSocket wire(peer);
  netd.call(network("lan", "10.83.0.0/24"));
  netd.call(attach("lan", ha));
  netd.call(attach("lan", hb));
  netd.call(attach("lan", bad));
  Bytes eth = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0xbb};
  auto frame = [&](std::initializer_list<uint8_t> rest) {
    Bytes f = eth;
    f.insert(f.end(), rest);
    return f;
  };
  wire.send(frame({0x08, 0x00, 0x45, 0,  0xff, 0xff, 0,  0,  0, 0, 64, 17,
                   0,    0,    10,   83, 0,    9,    10, 83, 0, 1}));  // IPv4 longer than the frame
  wire.send(frame({0x08, 0x00, 0x4f, 0, 0, 20}));                      // header past the end
  wire.send(frame({0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 9}));              // truncated ARP
  wire.send(frame({0x81, 0x00, 0, 5, 0x81, 0x00, 0, 6, 0x08, 0x00}));  // stacked tags
  for (int i = 0; i < 200; ++i) wire.send(frame({0x08, 0x00, uint8_t(i), uint8_t(i * 7)}));
  ASSERT_TRUE(lab.ping_until(a, "10.83.0.2"));
  Json drops = netd.call({{"op", "stats"}})["drops"];
  EXPECT_GE(drops.value("ipv4_bad_total_length", 0), 1) << drops.dump();
  EXPECT_GE(drops.value("arp_truncated", 0), 1) << drops.dump();
  EXPECT_GE(drops.value("vlan_stacked", 0), 1) << drops.dump();
}

// Frames the kernel drops before vireo-netd reads them (its receive ring full while it was
// stopped) show in the port's statistics.
TEST(NetdSwitchTest, FullReceiveRingIsCounted) {
  Lab lab;
  Netd netd(lab.dir());
  auto [port, peer] = lab.add_wire("ring");
  RawSocket wire(peer);
  netd.call(network("lan", "10.84.0.0/24"));
  netd.call(attach("lan", port));
  Bytes frame = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0xcc, 0x08, 0x00};
  frame.resize(60, 0);
  netd.pause();
  for (int i = 0; i < 1000; ++i) wire.send(frame);  // the ring holds a few hundred
  netd.resume();
  Json ports = netd.call({{"op", "port.list"}})["ports"];
  ASSERT_EQ(ports.size(), 1u);
  EXPECT_GE(ports[0]["stats"].value("rx_device_dropped", 0), 300u) << ports.dump();
}

TEST(NetdSwitchTest, TapPortCreatedByNetdCarriesTraffic) {
  Lab lab;
  Netd netd(lab.dir());
  std::string a = lab.add_namespace("a"), v = lab.add_namespace("v");
  std::string ha = lab.add_host(a, "10.80.0.1/24", "ha");
  std::string tap = lab.prefix() + "tap";
  netd.call(network("lan", "10.80.0.0/24"));
  netd.call(attach("lan", ha));
  netd.call({{"op", "port.attach"}, {"network", "lan"}, {"tap", tap}});
  // The TAP's kernel side plays the VM: move it into its own namespace.
  ASSERT_TRUE(run({"ip", "link", "set", tap, "netns", v}).ok());
  lab.in(v, {"ip", "addr", "add", "10.80.0.2/24", "dev", tap});
  lab.in(v, {"ip", "link", "set", tap, "up"});
  EXPECT_TRUE(lab.ping_until(a, "10.80.0.2"));
  // Large pings cross as several fragments and come back whole.
  EXPECT_TRUE(lab.in(a, {"ping", "-c", "1", "-W", "2", "-s", "4000", "10.80.0.2"}).ok());
  netd.call({{"op", "port.detach"}, {"name", tap}});
  EXPECT_FALSE(lab.ping_once(a, "10.80.0.2"));
}

TEST(NetdSwitchTest, ForwardingSurvivesControllerLossAndRestoresAfterRestart) {
  Lab lab;
  auto netd = std::make_unique<Netd>(lab.dir());
  std::string a = lab.add_namespace("a"), b = lab.add_namespace("b");
  std::string ha = lab.add_host(a, "10.81.0.1/24", "ha");
  std::string hb = lab.add_host(b, "10.81.0.2/24", "hb");
  netd->call(network("lan", "10.81.0.0/24"));
  netd->call(attach("lan", ha));
  netd->call(attach("lan", hb));
  ASSERT_TRUE(lab.ping_until(a, "10.81.0.2"));
  // The controller goes away and comes back: forwarding does not care.
  ASSERT_TRUE(netd->call({{"op", "port.list"}})["ok"].get<bool>());
  netd->reconnect();
  EXPECT_TRUE(lab.ping_until(a, "10.81.0.2"));
  netd.reset();  // SIGTERM: the daemon goes, the saved configuration stays
  EXPECT_FALSE(lab.ping_once(a, "10.81.0.2"));
  netd = std::make_unique<Netd>(lab.dir());
  EXPECT_TRUE(lab.ping_until(a, "10.81.0.2"));
  EXPECT_EQ(netd->call({{"op", "port.list"}})["ports"].size(), 2u);
}

TEST(NetdSwitchTest, ControlErrorsAreRepliesNotCrashes) {
  Lab lab;
  Netd netd(lab.dir());
  EXPECT_FALSE(netd.call({{"op", "nope"}}, false)["ok"].get<bool>());
  EXPECT_FALSE(netd.call(network("x", "10.0.0.1/24"), false)["ok"].get<bool>());
  netd.call(network("x", "10.82.0.0/24"));
  EXPECT_FALSE(netd.call(network("y", "10.82.0.0/16"), false)["ok"].get<bool>());
  EXPECT_FALSE(netd.call(attach("x", lab.prefix() + "missing"), false)["ok"].get<bool>());
  EXPECT_FALSE(netd.call(attach("nonet", "lo"), false)["ok"].get<bool>());
  EXPECT_TRUE(netd.call({{"op", "network.list"}})["networks"].size() == 1);
}

}  // namespace
}  // namespace vireo::net::testing
