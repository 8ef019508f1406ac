// vireo-netd's VXLAN overlay against the Linux kernel's: vireo-netd runs in a namespace playing
// host A; a second namespace plays host B with a kernel vxlan device (same VNI, UDP 4789) in a
// bridge. An instance namespace attached to the Vireo VXLAN network and host B's bridge ping
// each other over the underlay veth, and tshark decodes what crosses it as VXLAN.
#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <sstream>
#include <thread>
#include <tuple>

#include "netd_fixture.h"

namespace vireo::net::testing {
namespace {

constexpr const char* kVni = "4242";

// Sends one VXLAN datagram with the given flags byte and VNI to host A.
constexpr const char* kBadVxlan = R"(
import socket, sys
flags, vni = int(sys.argv[1]), int(sys.argv[2])
inner = bytes.fromhex("ffffffffffff020000000099") + b"\x08\x06" + bytes(28)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(bytes([flags, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0" + inner, ("10.251.0.1", 4789))
)";

class NetdVxlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = lab_.add_namespace("ha");
    b_ = lab_.add_namespace("hb");
    c_ = lab_.add_namespace("c");
    for (const std::string& ns : {a_, b_, c_})
      lab_.in(ns, {"sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"});
    // The underlay between the two hosts.
    ASSERT_TRUE(run({"ip", "link", "add", "ua", "netns", a_, "type", "veth", "peer", "name", "ub",
                     "netns", b_})
                    .ok());
    lab_.in(a_, {"ip", "addr", "add", "10.251.0.1/24", "dev", "ua"});
    lab_.in(a_, {"ip", "link", "set", "ua", "up"});
    lab_.in(b_, {"ip", "addr", "add", "10.251.0.2/24", "dev", "ub"});
    lab_.in(b_, {"ip", "link", "set", "ub", "up"});
    // A veth hands checksum-offloaded packets across namespaces unfinished, and a VXLAN packet
    // keeps its inner TCP checksum partial; a real NIC would complete it on the wire. Without
    // offload on B's underlay the kernel completes it, as the wire would show it.
    lab_.in(b_, {"ethtool", "-K", "ub", "tx", "off"});
    // Host B: kernel VXLAN in a bridge that holds B's address on the overlay.
    ASSERT_TRUE(lab_.in(b_, {"ip", "link", "add", "vx0", "type", "vxlan", "id", kVni, "dstport",
                             "4789", "local", "10.251.0.2", "remote", "10.251.0.1", "dev", "ub"})
                    .ok());
    lab_.in(b_, {"ip", "link", "add", "br0", "type", "bridge"});
    lab_.in(b_, {"ip", "link", "set", "vx0", "master", "br0"});
    lab_.in(b_, {"ip", "addr", "add", "10.90.0.3/24", "dev", "br0"});
    lab_.in(b_, {"ip", "link", "set", "vx0", "up"});
    lab_.in(b_, {"ip", "link", "set", "br0", "up"});
    // The instance on host A, attached to vireo-netd by a veth pair.
    ASSERT_TRUE(run({"ip", "link", "add", "hc", "netns", a_, "type", "veth", "peer", "name", "eth0",
                     "netns", c_})
                    .ok());
    lab_.in(c_, {"ip", "addr", "add", "10.90.0.2/24", "dev", "eth0"});
    lab_.in(c_, {"ip", "link", "set", "eth0", "mtu", "1450", "up"});
    lab_.in(a_, {"ip", "link", "set", "hc", "up"});

    netd_.emplace(lab_.dir(), a_);
    netd_->call({{"op", "network.create"},
                 {"name", "ovl"},
                 {"subnet", "10.90.0.0/24"},
                 {"vxlan", {{"vni", 4242}, {"remotes", {"10.251.0.2"}}}}});
    netd_->call({{"op", "port.attach"}, {"network", "ovl"}, {"iface", "hc"}});
  }
  void TearDown() override { netd_.reset(); }

  Lab lab_;
  std::optional<Netd> netd_;
  std::string a_, b_, c_;
};

TEST_F(NetdVxlanTest, InteropsWithKernelVxlanAndTsharkDecodesVni) {
  Json nets = netd_->call({{"op", "network.list"}})["networks"];
  ASSERT_EQ(nets.size(), 1u);
  EXPECT_EQ(nets[0]["mtu"], 1450);  // 1500 minus the 50 bytes of encapsulation
  ASSERT_TRUE(lab_.ping_until(c_, "10.90.0.3", std::chrono::seconds(15)));
  ASSERT_TRUE(lab_.ping_until(b_, "10.90.0.2"));

  // Capture on host B's underlay while the instance keeps pinging.
  std::string pcap = (lab_.dir() / "vxlan.pcap").string();
  std::atomic<bool> done = false;
  ProcessResult capture;
  std::thread t([&] {
    capture = lab_.in(b_,
                      {"tshark", "-q", "-i", "ub", "-f", "udp port 4789", "-c", "6", "-a",
                       "duration:25", "-w", pcap},
                      40000);
    done = true;
  });
  for (auto end = Clock::now() + std::chrono::seconds(30); !done && Clock::now() < end;)
    lab_.in(c_, {"ping", "-c", "1", "-W", "1", "10.90.0.3"});
  t.join();
  ASSERT_TRUE(capture.ok()) << capture.err;
  ProcessResult decoded = run({"tshark", "-r", pcap, "-d", "udp.port==4789,vxlan", "-T", "fields",
                               "-E", "occurrence=f", "-e", "ip.src", "-e", "udp.srcport", "-e",
                               "vxlan.vni", "-e", "vxlan.flags", "-e", "icmp.type"});
  ASSERT_TRUE(decoded.ok()) << decoded.err;
  std::istringstream lines(decoded.out);
  int from_netd = 0, from_kernel = 0;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream f(line);
    std::string src, sport, vni, flags, icmp;
    f >> src >> sport >> vni >> flags >> icmp;
    EXPECT_EQ(vni, kVni) << line;
    EXPECT_EQ(flags, "0x0800") << line;  // only the I flag
    if (src == "10.251.0.1") {
      ++from_netd;
      EXPECT_GE(std::stoi(sport), 49152) << line;  // flow entropy from the dynamic range
    } else {
      ++from_kernel;
    }
  }
  EXPECT_GE(from_netd, 1) << decoded.out;
  EXPECT_GE(from_kernel, 1) << decoded.out;

  // vireo-netd learned where host B's bridge lives.
  Json vteps = netd_->call({{"op", "vxlan.vteps"}, {"network", "ovl"}})["vxlan"];
  EXPECT_EQ(vteps["vni"], 4242);
  ASSERT_FALSE(vteps["learned"].empty()) << vteps.dump();
  EXPECT_EQ(vteps["learned"][0]["vtep"], "10.251.0.2");
}

TEST_F(NetdVxlanTest, TcpCrossesOverlayInBothDirections) {
  ASSERT_TRUE(lab_.ping_until(c_, "10.90.0.3", std::chrono::seconds(15)));
  // The instance's TCP leaves as GSO frames, which vireo-netd segments before encapsulating.
  ASSERT_TRUE(lab_.in(b_, {"iperf3", "-s", "-D", "-1", "-p", "5401"}).ok());
  ASSERT_TRUE(lab_.in(c_, {"iperf3", "-s", "-D", "-1", "-p", "5402"}).ok());
  for (auto [ns, to, port] :
       {std::tuple{c_, "10.90.0.3", "5401"}, std::tuple{b_, "10.90.0.2", "5402"}}) {
    ProcessResult r;
    for (auto end = Clock::now() + std::chrono::seconds(10); Clock::now() < end;) {
      r = lab_.in(ns, {"iperf3", "-c", to, "-p", port, "-t", "2", "-J"}, 30000);
      if (r.ok()) break;
    }
    ASSERT_TRUE(r.ok()) << r.out << r.err;
    double bps = (*parse_json(r.out))["end"]["sum_received"]["bits_per_second"].get<double>();
    EXPECT_GT(bps, 1e7);
    std::cout << "iperf3 over VXLAN from " << ns << ": " << bps / 1e9 << " Gbit/s\n";
  }
  Json drops = netd_->call({{"op", "stats"}})["drops"];
  EXPECT_EQ(drops.value("vxlan_gso", 0), 0) << drops.dump();
}

TEST_F(NetdVxlanTest, BadFlagsAndUnknownVniAreDroppedAndCounted) {
  lab_.in(b_, {"python3", "-c", kBadVxlan, "0", kVni});   // I flag missing
  lab_.in(b_, {"python3", "-c", kBadVxlan, "8", "777"});  // nobody's VNI
  Json drops;
  for (auto end = Clock::now() + std::chrono::seconds(5); Clock::now() < end;) {
    drops = netd_->call({{"op", "stats"}})["drops"];
    if (drops.value("vxlan_bad_flags", 0) >= 1 && drops.value("vxlan_unknown_vni", 0) >= 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling the counters
  }
  EXPECT_GE(drops.value("vxlan_bad_flags", 0), 1) << drops.dump();
  EXPECT_GE(drops.value("vxlan_unknown_vni", 0), 1) << drops.dump();
  // Still forwarding afterwards.
  EXPECT_TRUE(lab_.ping_until(c_, "10.90.0.3", std::chrono::seconds(15)));
}

TEST_F(NetdVxlanTest, VniValidationRemotesAndPersistence) {
  for (Json bad : {Json{{"vni", 0}}, Json{{"vni", 16777216}}, Json{{"remotes", {"10.0.0.1"}}},
                   Json{{"vni", 5}, {"remotes", {"nope"}}}, Json{{"vni", 4242}}}) {
    Json r = netd_->call(
        {{"op", "network.create"}, {"name", "x"}, {"subnet", "10.91.0.0/24"}, {"vxlan", bad}},
        false);
    EXPECT_FALSE(r["ok"].get<bool>()) << bad.dump();
  }
  netd_->call({{"op", "vxlan.remote.add"}, {"network", "ovl"}, {"ip", "10.251.0.9"}});
  netd_->stop();
  netd_->start();
  Json vteps = netd_->call({{"op", "vxlan.vteps"}, {"network", "ovl"}})["vxlan"];
  EXPECT_EQ(vteps["remotes"].size(), 2u) << vteps.dump();
  EXPECT_TRUE(lab_.ping_until(c_, "10.90.0.3", std::chrono::seconds(15)));
  netd_->call({{"op", "network.delete"}, {"name", "ovl"}}, false);  // the port is still there
  netd_->call({{"op", "port.detach"}, {"name", "hc"}});
  netd_->call({{"op", "network.delete"}, {"name", "ovl"}});
}

}  // namespace
}  // namespace vireo::net::testing
