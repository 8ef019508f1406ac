// The VXLAN pieces that need no sockets: flow entropy of the source port, the switch's overlay
// mode, and the decapsulation check shared with the parser.
#include <gtest/gtest.h>

#include <set>

#include "network/parser.h"
#include "network/switch.h"
#include "network/test_frames.h"
#include "network/vxlan_port.h"

namespace vireo::net {
namespace {

using namespace testing;

Bytes udp_frame(uint16_t sport, uint16_t dport) {
  return concat(ethernet(mac(2), mac(1), kEtherTypeIpv4),
                ipv4(ip4(10, 0, 0, 1), ip4(10, 0, 0, 2), kIpProtoUdp, udp(sport, dport, Bytes(8))));
}

TEST(VxlanTest, SourcePortIsStablePerFlowAndSpreadsFlows) {
  Bytes a = udp_frame(1000, 53);
  uint16_t pa = VxlanPort::source_port(a.data(), uint32_t(a.size()));
  EXPECT_EQ(pa, VxlanPort::source_port(a.data(), uint32_t(a.size())));
  std::set<uint16_t> ports;
  for (uint16_t s = 1000; s < 1100; ++s) {
    Bytes f = udp_frame(s, 53);
    uint16_t p = VxlanPort::source_port(f.data(), uint32_t(f.size()));
    EXPECT_GE(p, 49152);
    ports.insert(p);
  }
  EXPECT_GT(ports.size(), 90u);  // 100 flows, hardly any collisions
  Bytes shorty(14, 0);           // no L3: the MACs alone
  EXPECT_GE(VxlanPort::source_port(shorty.data(), 14), 49152);
}

TEST(VxlanTest, HeaderCheckNeedsIFlagAndInnerEthernet) {
  Bytes inner = concat(ethernet(kBroadcast, mac(1), kEtherTypeArp), Bytes(28, 0));
  uint32_t vni = 0;
  Bytes good = vxlan(4242, inner);
  EXPECT_EQ(parse_vxlan_header(good.data(), uint32_t(good.size()), vni), DropReason::kNone);
  EXPECT_EQ(vni, 4242u);
  Bytes bad = vxlan(4242, inner, 0x00);
  EXPECT_EQ(parse_vxlan_header(bad.data(), uint32_t(bad.size()), vni), DropReason::kVxlanBadFlags);
  for (uint32_t len = 0; len < kVxlanHeaderLen + 14; ++len)
    EXPECT_EQ(parse_vxlan_header(good.data(), len, vni), DropReason::kVxlanTruncated) << len;
}

TEST(VxlanTest, OverlayPortClassifiesByFrameNetworkAndSendsUntagged) {
  Switch sw;
  PortConfig overlay;
  overlay.mode = VlanMode::kOverlay;
  overlay.mtu = 65535;
  overlay.overlay_networks = {4096, 4097};
  sw.set_port(0, overlay);
  PortConfig a, b;
  a.access_vlan = 4096;
  b.access_vlan = 4097;
  sw.set_port(1, a);
  sw.set_port(2, b);
  Bytes f = concat(ethernet(kBroadcast, mac(9), kEtherTypeArp),
                   arp(1, mac(9), ip4(10, 0, 0, 9), Mac{}, ip4(10, 0, 0, 1)));
  ParsedFrame p;
  ASSERT_EQ(parse_frame(f.data(), uint32_t(f.size()), p), DropReason::kNone);
  std::array<Egress, 8> out{};
  Decision d = sw.forward(0, f.data(), p, 28, 1, out, 4097);
  ASSERT_EQ(d.drop, DropReason::kNone);
  ASSERT_EQ(d.count, 1u);
  EXPECT_EQ(out[0].port, 2);
  // A network the overlay does not carry is refused.
  EXPECT_EQ(sw.forward(0, f.data(), p, 28, 1, out, 4098).drop, DropReason::kVlanNotAllowed);
  // From an access port the flood reaches the overlay port, untagged.
  d = sw.forward(1, f.data(), p, 28, 1, out);
  ASSERT_EQ(d.count, 1u);
  EXPECT_EQ(out[0].port, 0);
  EXPECT_EQ(out[0].tag, TagOp::kKeep);
}

}  // namespace
}  // namespace vireo::net
