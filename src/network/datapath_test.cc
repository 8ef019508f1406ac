// The datapath with the router, driven through fake ports: no devices, no root.
#include "network/datapath.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <thread>

#include "network/firewall.h"
#include "network/router.h"
#include "network/test_frames.h"

namespace vireo::net {
namespace {

using namespace testing;

// A port whose "device" is two queues the test fills and reads.
class FakePort final : public Port {
 public:
  std::deque<Bytes> inbox;
  std::vector<Bytes> sent;
  std::vector<VnetHdr> sent_vnet;

  PortKind kind() const override { return PortKind::kTap; }
  size_t receive(std::span<RxFrame> out) override {
    size_t n = 0;
    held_.clear();
    while (n < out.size() && !inbox.empty()) {
      held_.push_back(std::move(inbox.front()));
      inbox.pop_front();
      out[n].data = held_.back().data();
      out[n].len = uint32_t(held_.back().size());
      out[n].vnet = VnetHdr{};
      ++n;
    }
    return n;
  }
  void release_rx() override {}
  void enqueue(const RxFrame& frame, TagOp tag, uint16_t vlan) override {
    TxFrame t;
    t.build(frame, tag, vlan);
    Bytes flat;
    for (int i = 1; i < t.iovcnt; ++i) {
      auto* p = static_cast<uint8_t*>(t.iov[i].iov_base);
      flat.insert(flat.end(), p, p + t.iov[i].iov_len);
    }
    sent.push_back(flat);
    sent_vnet.push_back(t.vnet);
  }
  uint64_t flush() override { return 0; }

 private:
  std::deque<Bytes> held_;  // deque: pointers stay valid while it grows
};

constexpr uint32_t kGw1 = ip4(10, 1, 0, 1), kGw2 = ip4(10, 2, 0, 1);
constexpr uint32_t kHost1 = ip4(10, 1, 0, 5), kHost2 = ip4(10, 2, 0, 7);

Mac to_mac(MacKey k) {
  Mac m;
  for (int i = 0; i < 6; ++i) m.b[i] = uint8_t(k >> (40 - 8 * i));
  return m;
}

class DatapathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p1 = std::make_unique<FakePort>(), p2 = std::make_unique<FakePort>();
    port1_ = p1.get();
    port2_ = p2.get();
    PortConfig c1, c2;
    c1.access_vlan = 4096;
    c2.access_vlan = 4097;
    id1_ = *dp_.add_port(std::move(p1), c1);
    id2_ = *dp_.add_port(std::move(p2), c2);
    PortId r1 = *dp_.add_internal_port(&router_, c1);
    PortId r2 = *dp_.add_internal_port(&router_, c2);
    router_.add_leg(r1, Cidr{ip4(10, 1, 0, 0), 24}, kGw1, 1500);
    router_.add_leg(r2, Cidr{ip4(10, 2, 0, 0), 24}, kGw2, 1500);
  }

  void receive(FakePort* port, PortId id, Bytes frame) {
    port->inbox.push_back(std::move(frame));
    dp_.poll_port(id, now_);
  }
  // host2 announces itself so the router knows its MAC.
  void resolve_host2() {
    receive(
        port2_, id2_,
        concat(ethernet(kBroadcast, mac(7), kEtherTypeArp), arp(1, mac(7), kHost2, Mac{}, kGw2)));
    port2_->sent.clear();
  }
  Bytes ping(uint32_t dst, uint8_t ttl = 64) {
    return concat(ethernet(to_mac(Router::leg_mac(kGw1)), mac(5), kEtherTypeIpv4),
                  ipv4(kHost1, dst, kIpProtoIcmp, icmp_echo(8, 1, 1, Bytes(8, 0x42)), ttl));
  }

  Datapath dp_;
  DhcpServer dhcp_;
  Router router_{dp_, nullptr, &dhcp_};
  FakePort* port1_ = nullptr;
  FakePort* port2_ = nullptr;
  PortId id1_ = kNoPort, id2_ = kNoPort;
  uint64_t now_ = 1'000'000'000'000ull;
};

TEST_F(DatapathTest, RouterAnswersArpForGateway) {
  receive(port1_, id1_,
          concat(ethernet(kBroadcast, mac(5), kEtherTypeArp), arp(1, mac(5), kHost1, Mac{}, kGw1)));
  ASSERT_EQ(port1_->sent.size(), 1u);
  const Bytes& r = port1_->sent[0];
  ParsedFrame p;
  ASSERT_EQ(parse_frame(r.data(), uint32_t(r.size()), p), DropReason::kNone);
  ASSERT_TRUE(p.is_arp());
  EXPECT_EQ(load_be16(r.data() + p.l3 + 6), 2);  // reply
  EXPECT_EQ(mac_key(r.data() + p.l3 + 8), Router::leg_mac(kGw1));
  EXPECT_EQ(load_be32(r.data() + p.l3 + 14), kGw1);
  EXPECT_EQ(mac_key(r.data()), mac_key(mac(5).b));
}

TEST_F(DatapathTest, RouterAnswersEchoWithValidChecksums) {
  receive(port1_, id1_, ping(kGw1));
  ASSERT_EQ(port1_->sent.size(), 1u);
  const Bytes& r = port1_->sent[0];
  ParsedFrame p;
  ASSERT_EQ(parse_frame(r.data(), uint32_t(r.size()), p), DropReason::kNone);
  EXPECT_EQ(r[p.l4], 0);  // echo reply
  EXPECT_EQ(checksum(r.data() + p.l4, p.ip_len - (p.l4 - p.l3)), 0);
  EXPECT_EQ(load_be32(r.data() + p.l3 + 12), kGw1);
  EXPECT_EQ(load_be32(r.data() + p.l3 + 16), kHost1);
}

TEST_F(DatapathTest, RouterForwardsAndDecrementsTtl) {
  resolve_host2();
  receive(port1_, id1_, ping(kHost2));
  ASSERT_EQ(port2_->sent.size(), 1u);
  const Bytes& f = port2_->sent[0];
  ParsedFrame p;
  ASSERT_EQ(parse_frame(f.data(), uint32_t(f.size()), p), DropReason::kNone);  // checksum ok
  EXPECT_EQ(f[p.l3 + 8], 63);
  EXPECT_EQ(mac_key(f.data()), mac_key(mac(7).b));
  EXPECT_EQ(mac_key(f.data() + 6), Router::leg_mac(kGw2));
}

TEST_F(DatapathTest, UnresolvedNextHopTriggersArpRequest) {
  receive(port1_, id1_, ping(kHost2));
  ASSERT_EQ(port2_->sent.size(), 1u);
  const Bytes& f = port2_->sent[0];
  EXPECT_EQ(load_be16(f.data() + 12), kEtherTypeArp);
  EXPECT_EQ(load_be32(f.data() + 14 + 24), kHost2);
  EXPECT_EQ(dp_.drops()[DropReason::kNoRoute], 1u);
}

TEST_F(DatapathTest, TtlOneGetsTimeExceeded) {
  resolve_host2();
  receive(port1_, id1_, ping(kHost2, 1));
  EXPECT_TRUE(port2_->sent.empty());
  ASSERT_EQ(port1_->sent.size(), 1u);
  const Bytes& r = port1_->sent[0];
  ParsedFrame p;
  ASSERT_EQ(parse_frame(r.data(), uint32_t(r.size()), p), DropReason::kNone);
  EXPECT_EQ(r[p.l4], 11);
  EXPECT_EQ(checksum(r.data() + p.l4, p.ip_len - 20), 0);
  EXPECT_EQ(dp_.drops()[DropReason::kTtlExceeded], 1u);
}

TEST_F(DatapathTest, NoRouteGetsUnreachableAndStaticRouteFixesIt) {
  receive(port1_, id1_, ping(ip4(192, 168, 9, 9)));
  ASSERT_EQ(port1_->sent.size(), 1u);
  EXPECT_EQ(port1_->sent[0][14 + 20], 3);
  ASSERT_TRUE(router_.add_route(Cidr{ip4(192, 168, 9, 0), 24}, kHost2));
  EXPECT_FALSE(router_.add_route(Cidr{ip4(192, 168, 8, 0), 24}, ip4(172, 16, 0, 1)));
  resolve_host2();
  receive(port1_, id1_, ping(ip4(192, 168, 9, 9)));
  ASSERT_EQ(port2_->sent.size(), 1u);
  EXPECT_EQ(mac_key(port2_->sent[0].data()), mac_key(mac(7).b));
}

TEST_F(DatapathTest, MalformedFramesAreCountedPerReason) {
  Bytes good = ping(kGw1);
  Bytes short_ip = good;
  short_ip.resize(30);
  receive(port1_, id1_, short_ip);
  receive(port1_, id1_, Bytes(5, 0));
  EXPECT_EQ(dp_.drops()[DropReason::kIpv4Truncated], 1u);
  EXPECT_EQ(dp_.drops()[DropReason::kEthTruncated], 1u);
  EXPECT_EQ(dp_.sw().stats(id1_).rx_dropped, 2u);
  EXPECT_TRUE(port1_->sent.empty());
}

Bytes dhcp_request(Mac client, uint8_t type, uint32_t requested = 0) {
  Bytes m = dhcp_discover(client);
  m.resize(240);
  append(m, {53, 1, type});
  if (requested) {
    append(m, {50, 4});
    append32(m, requested);
  }
  append(m, {255});
  return concat(ethernet(kBroadcast, client, kEtherTypeIpv4),
                ipv4(0, 0xffffffff, kIpProtoUdp, udp(68, 67, m)));
}

TEST_F(DatapathTest, DhcpOffersThenAcksAnAddress) {
  dhcp_.enable(4096, Cidr{ip4(10, 1, 0, 0), 24}, kGw1);
  receive(port1_, id1_, dhcp_request(mac(9), 1));
  ASSERT_EQ(port1_->sent.size(), 1u);
  ParsedFrame p;
  const Bytes& offer = port1_->sent[0];
  ASSERT_EQ(parse_frame(offer.data(), uint32_t(offer.size()), p), DropReason::kNone);
  ASSERT_EQ(p.app, App::kDhcp);
  EXPECT_EQ(p.dhcp_type, 2);
  uint32_t offered = load_be32(offer.data() + p.payload + 16);
  EXPECT_EQ(offered, ip4(10, 1, 0, 2));  // .1 is the gateway
  // The gateway is the DNS server too (option 6).
  const Bytes dns_option{6, 4, 10, 1, 0, 1};
  EXPECT_NE(std::search(offer.begin(), offer.end(), dns_option.begin(), dns_option.end()),
            offer.end());
  receive(port1_, id1_, dhcp_request(mac(9), 3, offered));
  ASSERT_EQ(port1_->sent.size(), 2u);
  ASSERT_EQ(parse_frame(port1_->sent[1].data(), uint32_t(port1_->sent[1].size()), p),
            DropReason::kNone);
  EXPECT_EQ(p.dhcp_type, 5);
  // Asking for somebody else's address gets a NAK.
  receive(port1_, id1_, dhcp_request(mac(10), 3, offered));
  ASSERT_EQ(parse_frame(port1_->sent[2].data(), uint32_t(port1_->sent[2].size()), p),
            DropReason::kNone);
  EXPECT_EQ(p.dhcp_type, 6);
  EXPECT_FALSE(dhcp_.reserve(4096, mac_key(mac(11).b), offered));
  EXPECT_TRUE(dhcp_.reserve(4096, mac_key(mac(11).b), ip4(10, 1, 0, 50)));
}

// A migrated guest brings its address: the adopted lease makes its renewal an ACK (without it,
// a NAK), and the address is not offered to anybody else.
TEST_F(DatapathTest, AdoptedLeaseIsRenewedAndNotGivenAway) {
  dhcp_.enable(4096, Cidr{ip4(10, 1, 0, 0), 24}, kGw1);
  const uint32_t brought = ip4(10, 1, 0, 2);
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);  // the clock the router ages leases by
  const uint64_t now = uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
  ParsedFrame p;
  auto last_type = [&] {
    const Bytes& f = port1_->sent.back();
    EXPECT_EQ(parse_frame(f.data(), uint32_t(f.size()), p), DropReason::kNone);
    return p.dhcp_type;
  };
  receive(port1_, id1_, dhcp_request(mac(9), 3, brought));
  EXPECT_EQ(last_type(), 6) << "a lease this server never gave: NAK";
  ASSERT_TRUE(dhcp_.adopt_lease(4096, mac_key(mac(9).b), brought, "m1", now));
  receive(port1_, id1_, dhcp_request(mac(9), 3, brought));
  EXPECT_EQ(last_type(), 5);
  receive(port1_, id1_, dhcp_request(mac(10), 1));
  EXPECT_EQ(last_type(), 2);
  EXPECT_NE(load_be32(port1_->sent.back().data() + p.payload + 16), brought);
  EXPECT_FALSE(dhcp_.adopt_lease(4096, mac_key(mac(11).b), brought, "", now)) << "held by mac 9";
  EXPECT_FALSE(dhcp_.adopt_lease(4096, mac_key(mac(11).b), kGw1, "", now));
  EXPECT_FALSE(dhcp_.adopt_lease(4096, mac_key(mac(11).b), ip4(10, 2, 0, 5), "", now));
}

// The router with NAT: lan (10.1.0.0/24) is masqueraded behind wan's gateway 10.2.0.1.
class NatDatapathTest : public DatapathTest {
 protected:
  void SetUp() override {
    auto p1 = std::make_unique<FakePort>(), p2 = std::make_unique<FakePort>();
    lan_ = p1.get();
    wan_ = p2.get();
    PortConfig c1, c2;
    c1.access_vlan = 4096;
    c2.access_vlan = 4097;
    lan_id_ = *dp_.add_port(std::move(p1), c1);
    wan_id_ = *dp_.add_port(std::move(p2), c2);
    router_.add_leg(*dp_.add_internal_port(&router_, c1), Cidr{ip4(10, 1, 0, 0), 24}, kGw1, 1500,
                    LegNat::kMasquerade);
    router_.add_leg(*dp_.add_internal_port(&router_, c2), Cidr{ip4(10, 2, 0, 0), 24}, kGw2, 1500,
                    LegNat::kUplink);
    // Both hosts announce themselves.
    receive(
        lan_, lan_id_,
        concat(ethernet(kBroadcast, mac(5), kEtherTypeArp), arp(1, mac(5), kHost1, Mac{}, kGw1)));
    receive(
        wan_, wan_id_,
        concat(ethernet(kBroadcast, mac(7), kEtherTypeArp), arp(1, mac(7), kHost2, Mac{}, kGw2)));
    lan_->sent.clear();
    wan_->sent.clear();
  }
  ParsedFrame parsed(const Bytes& f) {
    ParsedFrame p;
    EXPECT_EQ(parse_frame(f.data(), uint32_t(f.size()), p), DropReason::kNone);
    return p;
  }

  Firewall firewall_;
  Router router_{dp_, &firewall_, &dhcp_};
  FakePort* lan_ = nullptr;
  FakePort* wan_ = nullptr;
  PortId lan_id_ = kNoPort, wan_id_ = kNoPort;
};

TEST_F(NatDatapathTest, EchoIsMasqueradedAndReplyTranslatedBack) {
  receive(lan_, lan_id_, ping(kHost2));
  ASSERT_EQ(wan_->sent.size(), 1u);
  Bytes out = wan_->sent[0];
  ParsedFrame p = parsed(out);  // IPv4 checksum verified
  EXPECT_EQ(load_be32(out.data() + p.l3 + 12), kGw2);
  EXPECT_EQ(checksum(out.data() + p.l4, p.ip_len - 20), 0);
  uint16_t id = load_be16(out.data() + p.l4 + 4);
  // host2 answers the NAT address.
  Bytes reply = concat(ethernet(to_mac(Router::leg_mac(kGw2)), mac(7), kEtherTypeIpv4),
                       ipv4(kHost2, kGw2, kIpProtoIcmp, icmp_echo(0, id, 1, Bytes(8, 0x42))));
  receive(wan_, wan_id_, reply);
  ASSERT_EQ(lan_->sent.size(), 1u);
  Bytes back = lan_->sent[0];
  p = parsed(back);
  EXPECT_EQ(load_be32(back.data() + p.l3 + 16), kHost1);
  EXPECT_EQ(load_be16(back.data() + p.l4 + 4), 1);  // the original identifier
  EXPECT_EQ(checksum(back.data() + p.l4, p.ip_len - 20), 0);
  // An echo request to the NAT address is the router's, whatever its identifier.
  Bytes request = concat(ethernet(to_mac(Router::leg_mac(kGw2)), mac(7), kEtherTypeIpv4),
                         ipv4(kHost2, kGw2, kIpProtoIcmp, icmp_echo(8, id, 1)));
  receive(wan_, wan_id_, request);
  EXPECT_EQ(lan_->sent.size(), 1u);
  ASSERT_EQ(wan_->sent.size(), 2u);
  EXPECT_EQ(wan_->sent[1][parsed(wan_->sent[1]).l4], 0);  // echo reply from the router
}

TEST_F(NatDatapathTest, IcmpErrorAboutTranslatedPacketReachesInnerHost) {
  Bytes dgram = concat(ethernet(to_mac(Router::leg_mac(kGw1)), mac(5), kEtherTypeIpv4),
                       ipv4(kHost1, kHost2, kIpProtoUdp, udp(4000, 7999, Bytes(4, 1))));
  receive(lan_, lan_id_, dgram);
  ASSERT_EQ(wan_->sent.size(), 1u);
  const Bytes& out = wan_->sent[0];
  ParsedFrame p = parsed(out);
  // host2's port unreachable quotes the translated datagram (IP header + 8 bytes).
  Bytes icmp{3, 3, 0, 0, 0, 0, 0, 0};
  icmp.insert(icmp.end(), out.begin() + p.l3, out.begin() + p.l4 + 8);
  store_be16(icmp.data() + 2, checksum(icmp.data(), icmp.size()));
  receive(wan_, wan_id_,
          concat(ethernet(to_mac(Router::leg_mac(kGw2)), mac(7), kEtherTypeIpv4),
                 ipv4(kHost2, kGw2, kIpProtoIcmp, icmp)));
  ASSERT_EQ(lan_->sent.size(), 1u);
  const Bytes& back = lan_->sent[0];
  p = parsed(back);
  EXPECT_EQ(load_be32(back.data() + p.l3 + 16), kHost1);
  EXPECT_EQ(checksum(back.data() + p.l4, p.ip_len - 20), 0);  // ICMP checksum still right
  const uint8_t* quoted = back.data() + p.payload;
  EXPECT_EQ(load_be32(quoted + 12), kHost1);  // lan sees its own datagram quoted
  EXPECT_EQ(load_be16(quoted + 20), 4000);
  EXPECT_EQ(checksum(quoted, 20), 0);  // and its header checksum is right
}

// Hairpin: an instance inside reaching the forward of the uplink address gets to the target on
// its own network, both addresses translated (so the answer comes back through the router),
// and the answer arrives from the uplink address and forwarded port.
TEST_F(NatDatapathTest, PortForwardWorksFromInsideThroughHairpin) {
  ASSERT_TRUE(router_.forwards().add(PortForward{kIpProtoTcp, 8080, "lan", kHost1, 80}));
  const uint32_t neighbour = ip4(10, 1, 0, 3);
  receive(
      lan_, lan_id_,
      concat(ethernet(kBroadcast, mac(6), kEtherTypeArp), arp(1, mac(6), neighbour, Mac{}, kGw1)));
  lan_->sent.clear();
  Bytes syn = concat(ethernet(to_mac(Router::leg_mac(kGw1)), mac(6), kEtherTypeIpv4),
                     ipv4(neighbour, kGw2, kIpProtoTcp, tcp(40001, 8080, 0x02)));
  receive(lan_, lan_id_, syn);
  ASSERT_EQ(lan_->sent.size(), 1u);
  ParsedFrame p = parsed(lan_->sent[0]);
  const uint8_t* ip = lan_->sent[0].data() + p.l3;
  EXPECT_EQ(load_be32(ip + 16), kHost1);
  EXPECT_EQ(p.dst_port, 80);
  EXPECT_EQ(load_be32(ip + 12), kGw1) << "the target must answer the router, not the neighbour";
  const uint16_t translated_port = p.src_port;
  Bytes synack = concat(ethernet(to_mac(Router::leg_mac(kGw1)), mac(5), kEtherTypeIpv4),
                        ipv4(kHost1, kGw1, kIpProtoTcp, tcp(80, translated_port, 0x12)));
  receive(lan_, lan_id_, synack);
  ASSERT_EQ(lan_->sent.size(), 2u);
  p = parsed(lan_->sent[1]);
  ip = lan_->sent[1].data() + p.l3;
  EXPECT_EQ(load_be32(ip + 12), kGw2);
  EXPECT_EQ(load_be32(ip + 16), neighbour);
  EXPECT_EQ(p.src_port, 8080);
  EXPECT_EQ(p.dst_port, 40001);
  EXPECT_EQ(mac_key(lan_->sent[1].data()), mac_key(mac(6).b));
  EXPECT_TRUE(wan_->sent.empty());
}

TEST_F(NatDatapathTest, PortForwardReachesInstanceAndUnsupportedIsCounted) {
  ASSERT_TRUE(router_.forwards().add(PortForward{kIpProtoTcp, 8080, "lan", kHost1, 80}));
  Bytes syn = concat(ethernet(to_mac(Router::leg_mac(kGw2)), mac(7), kEtherTypeIpv4),
                     ipv4(kHost2, kGw2, kIpProtoTcp, tcp(40000, 8080, 0x02)));
  receive(wan_, wan_id_, syn);
  ASSERT_EQ(lan_->sent.size(), 1u);
  ParsedFrame p = parsed(lan_->sent[0]);
  EXPECT_EQ(load_be32(lan_->sent[0].data() + p.l3 + 16), kHost1);
  EXPECT_EQ(p.dst_port, 80);
  // The instance's SYN-ACK leaves from the forwarded address and port.
  Bytes synack = concat(ethernet(to_mac(Router::leg_mac(kGw1)), mac(5), kEtherTypeIpv4),
                        ipv4(kHost1, kHost2, kIpProtoTcp, tcp(80, 40000, 0x12)));
  receive(lan_, lan_id_, synack);
  ASSERT_EQ(wan_->sent.size(), 1u);
  p = parsed(wan_->sent[0]);
  EXPECT_EQ(load_be32(wan_->sent[0].data() + p.l3 + 12), kGw2);
  EXPECT_EQ(p.src_port, 8080);
  // ICMP other than echo cannot be masqueraded.
  Bytes other = concat(ethernet(to_mac(Router::leg_mac(kGw1)), mac(5), kEtherTypeIpv4),
                       ipv4(kHost1, kHost2, kIpProtoIcmp, Bytes{13, 0, 0xf2, 0xff, 0, 0, 0, 0}));
  receive(lan_, lan_id_, other);
  EXPECT_EQ(dp_.drops()[DropReason::kNatUnsupported], 1u);
  EXPECT_EQ(wan_->sent.size(), 1u);
}

TEST(TxFrameTest, PushAndPopShiftVnetOffsets) {
  Bytes f = concat(ethernet(mac(2), mac(1), kEtherTypeIpv4), Bytes(40, 0));
  RxFrame in{f.data(), uint32_t(f.size()),
             VnetHdr{kVnetNeedsCsum, kVnetGsoTcpV4, 54, 1448, 34, 16}};
  TxFrame t;
  t.build(in, TagOp::kPush, 10);
  EXPECT_EQ(t.len, f.size() + 4);
  EXPECT_EQ(t.vnet.csum_start, 38);
  EXPECT_EQ(t.vnet.hdr_len, 58);
  EXPECT_EQ(load_be16(t.tag + 2), 10);

  Bytes tagged = concat(ethernet(mac(2), mac(1), kEtherTypeIpv4, 10), Bytes(40, 0));
  RxFrame in2{tagged.data(), uint32_t(tagged.size()), VnetHdr{kVnetNeedsCsum, 0, 0, 0, 38, 16}};
  t.build(in2, TagOp::kPop, 0);
  EXPECT_EQ(t.len, tagged.size() - 4);
  EXPECT_EQ(t.vnet.csum_start, 34);
}

}  // namespace
}  // namespace vireo::net

namespace vireo::net {
namespace {

// A port that queues transmissions per worker and delivers them at flush, as the real ports
// do: a frame queued by one worker and flushed by another would never be delivered.
class WorkerPort final : public Port {
 public:
  std::vector<Bytes> inbox;  // read by the one worker polling this port
  size_t next = 0;
  std::mutex mu;
  std::vector<Bytes> delivered;

  PortKind kind() const override { return PortKind::kTap; }
  size_t receive(std::span<RxFrame> out) override {
    size_t n = 0;
    for (; n < out.size() && next < inbox.size(); ++n, ++next)
      out[n] = RxFrame{inbox[next].data(), uint32_t(inbox[next].size()), VnetHdr{}, 0};
    return n;
  }
  void release_rx() override {}
  void enqueue(const RxFrame& frame, TagOp, uint16_t) override {
    queued_.mine().emplace_back(frame.data, frame.data + frame.len);
  }
  uint64_t flush() override {
    std::vector<Bytes>& queued = queued_.mine();
    std::lock_guard lock(mu);
    for (Bytes& b : queued) delivered.push_back(std::move(b));
    queued.clear();
    return 0;
  }

 private:
  PerWorker<std::vector<Bytes>> queued_;
};

size_t arp_replies_to(const std::vector<Bytes>& frames, Mac to) {
  return std::count_if(frames.begin(), frames.end(), [&](const Bytes& f) {
    return f.size() >= 42 && load_be16(f.data() + 12) == kEtherTypeArp &&
           load_be16(f.data() + 20) == 2 && std::equal(to.b, to.b + 6, f.data());
  });
}

// Two workers forward through one datapath at once, each polling its own port: every frame
// arrives, the router answers each worker's ARP requests from that worker's buffers, and the
// shared counters add up.
TEST(DatapathWorkersTest, TwoWorkersForwardAtOnce) {
  set_worker_count(2);
  Datapath dp;
  Router router(dp, nullptr);
  PortConfig c;
  c.access_vlan = 4096;
  auto a = std::make_unique<WorkerPort>(), b = std::make_unique<WorkerPort>();
  WorkerPort* port_a = a.get();
  WorkerPort* port_b = b.get();
  PortId id_a = *dp.add_port(std::move(a), c), id_b = *dp.add_port(std::move(b), c);
  PortId leg = *dp.add_internal_port(&router, c);
  router.add_leg(leg, Cidr{ip4(10, 1, 0, 0), 24}, kGw1, 1500);

  constexpr size_t kFrames = 20000, kArpEvery = 10;
  auto fill = [&](WorkerPort* port, Mac self, uint32_t self_ip, Mac peer) {
    for (size_t i = 0; i < kFrames; ++i)
      port->inbox.push_back(i % kArpEvery == 0
                                ? concat(ethernet(kBroadcast, self, kEtherTypeArp),
                                         arp(1, self, self_ip, Mac{}, kGw1))
                                : concat(ethernet(peer, self, kEtherTypeIpv4),
                                         ipv4(self_ip, ip4(10, 1, 0, 99), kIpProtoUdp,
                                              udp(1000, 2000, Bytes(32, 7)))));
  };
  fill(port_a, mac(5), kHost1, mac(6));
  fill(port_b, mac(6), ip4(10, 1, 0, 6), mac(5));

  auto run = [&](size_t worker, WorkerPort* port, PortId id) {
    set_this_worker(worker);
    uint64_t now = router.now_ns();  // the router's replies are switched at its clock
    while (port->next < port->inbox.size()) dp.poll_port(id, now);
  };
  std::thread t0(run, 0, port_a, id_a), t1(run, 1, port_b, id_b);
  t0.join();
  t1.join();
  set_this_worker(0);

  // Each port gets every frame of the other (unicast, or flooded ARP requests) plus the
  // router's replies to its own ARP requests.
  constexpr size_t kReplies = kFrames / kArpEvery;
  EXPECT_EQ(port_a->delivered.size(), kFrames + kReplies);
  EXPECT_EQ(port_b->delivered.size(), kFrames + kReplies);
  EXPECT_EQ(arp_replies_to(port_a->delivered, mac(5)), kReplies);
  EXPECT_EQ(arp_replies_to(port_b->delivered, mac(6)), kReplies);
  EXPECT_EQ(dp.sw().stats(id_a).rx_packets, kFrames);
  EXPECT_EQ(dp.sw().stats(id_a).tx_packets, kFrames + kReplies);
  EXPECT_EQ(dp.sw().stats(id_b).tx_packets, kFrames + kReplies);
  dp.remove_port(leg);
}

}  // namespace
}  // namespace vireo::net
