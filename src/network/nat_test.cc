// NAT: the translated connections of Conntrack and the packet rewrite with its checksums.
#include "network/nat.h"

#include <gtest/gtest.h>

#include "network/firewall.h"
#include "network/test_frames.h"

namespace vireo::net {
namespace {

using namespace testing;

constexpr uint32_t kInner = ip4(10, 1, 0, 5), kRemote = ip4(192, 168, 1, 9),
                   kNatIp = ip4(192, 168, 1, 1);
constexpr uint64_t kSec = 1'000'000'000ull;

struct Packet {
  Bytes bytes;
  ParsedFrame parsed;
};

Packet make(uint32_t src, uint32_t dst, const Bytes& l4, uint8_t proto) {
  Packet p{concat(ethernet(mac(2), mac(1), kEtherTypeIpv4), ipv4(src, dst, proto, l4)), {}};
  EXPECT_EQ(parse_frame(p.bytes.data(), uint32_t(p.bytes.size()), p.parsed), DropReason::kNone);
  return p;
}

// The L4 checksum over the pseudo-header verifies (sums to zero).
bool l4_checksum_ok(const Packet& p) {
  const uint8_t* ip = p.bytes.data() + p.parsed.l3;
  uint32_t l4_len = p.parsed.ip_len - (p.parsed.l4 - p.parsed.l3);
  uint64_t sum = checksum_add(p.bytes.data() + p.parsed.l4, l4_len);
  if (p.parsed.l4_kind != L4::kIcmp) sum += ipv4_pseudo_sum(ip, p.parsed.ip_proto, l4_len);
  return checksum_finish(sum) == 0;
}

Bytes udp_with_checksum(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport) {
  Bytes u = udp(sport, dport, Bytes{1, 2, 3, 4, 5});
  Bytes pseudo;
  append32(pseudo, src);
  append32(pseudo, dst);
  append(pseudo, {0, kIpProtoUdp});
  append16(pseudo, uint16_t(u.size()));
  uint16_t sum = checksum_finish(checksum_add(u.data(), u.size(), checksum_add(pseudo.data(), 12)));
  store_be16(u.data() + 6, sum);
  return u;
}

TEST(NatRewriteTest, UdpTcpAndIcmpChecksumsStayValid) {
  Packet u = make(kInner, kRemote, udp_with_checksum(kInner, kRemote, 4000, 53), kIpProtoUdp);
  ASSERT_TRUE(l4_checksum_ok(u));
  nat_rewrite(u.bytes.data(), u.parsed, FlowKey{kNatIp, kRemote, 40001, 53, kIpProtoUdp}, false);
  ASSERT_EQ(parse_frame(u.bytes.data(), uint32_t(u.bytes.size()), u.parsed), DropReason::kNone);
  EXPECT_EQ(load_be32(u.bytes.data() + u.parsed.l3 + 12), kNatIp);
  EXPECT_EQ(u.parsed.src_port, 40001);
  EXPECT_TRUE(l4_checksum_ok(u));

  Bytes t = tcp(5000, 80, 0x02, Bytes(10, 7));
  Packet tp = make(kRemote, kNatIp, t, kIpProtoTcp);
  // A TCP checksum computed over the real pseudo-header first.
  uint8_t* l4 = tp.bytes.data() + tp.parsed.l4;
  store_be16(l4 + 16, 0);
  store_be16(l4 + 16,
             checksum_finish(checksum_add(l4, t.size(),
                                          ipv4_pseudo_sum(tp.bytes.data() + tp.parsed.l3,
                                                          kIpProtoTcp, uint32_t(t.size())))));
  ASSERT_TRUE(l4_checksum_ok(tp));
  nat_rewrite(tp.bytes.data(), tp.parsed, FlowKey{kRemote, kInner, 5000, 8080, kIpProtoTcp}, false);
  ASSERT_EQ(parse_frame(tp.bytes.data(), uint32_t(tp.bytes.size()), tp.parsed), DropReason::kNone);
  EXPECT_EQ(tp.parsed.dst_port, 8080);
  EXPECT_TRUE(l4_checksum_ok(tp));

  Packet echo = make(kInner, kRemote, icmp_echo(8, 77, 1, Bytes(16, 1)), kIpProtoIcmp);
  nat_rewrite(echo.bytes.data(), echo.parsed, FlowKey{kNatIp, kRemote, 999, 999, kIpProtoIcmp},
              false);
  EXPECT_EQ(load_be16(echo.bytes.data() + echo.parsed.l4 + 4), 999);
  EXPECT_TRUE(l4_checksum_ok(echo));
}

TEST(NatRewriteTest, PartialChecksumKeepsPseudoHeaderSum) {
  // NEEDS_CSUM: the field holds the pseudo-header sum; after translation it must hold the sum
  // of the new pseudo-header, so the receiver's completion is right.
  Bytes t = tcp(5000, 80, 0x10, Bytes(20, 3));
  Packet p = make(kInner, kRemote, t, kIpProtoTcp);
  auto pseudo = [&](const Packet& q) {
    uint64_t s = ipv4_pseudo_sum(q.bytes.data() + q.parsed.l3, kIpProtoTcp, uint32_t(t.size()));
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return uint16_t(s);
  };
  store_be16(p.bytes.data() + p.parsed.l4 + 16, pseudo(p));
  nat_rewrite(p.bytes.data(), p.parsed, FlowKey{kNatIp, kRemote, 41000, 80, kIpProtoTcp}, true);
  EXPECT_EQ(load_be16(p.bytes.data() + p.parsed.l4 + 16), pseudo(p));
  EXPECT_EQ(load_be16(p.bytes.data() + p.parsed.l4), 41000);
}

TEST(NatConntrackTest, SnatReplyMatchesAndPortsDoNotCollide) {
  Conntrack ct;
  FlowKey a{kInner, kRemote, 4000, 53, kIpProtoUdp};
  FlowKey b{ip4(10, 1, 0, 6), kRemote, 4000, 53, kIpProtoUdp};
  Flow* fa = ct.create_snat(a, kNatIp, 10 * kSec);
  Flow* fb = ct.create_snat(b, kNatIp, 10 * kSec);
  ASSERT_TRUE(fa && fb);
  EXPECT_EQ(fa->translated.sport, 4000);  // kept when free
  EXPECT_NE(fb->translated.sport, 4000);  // the same remote needs another one
  EXPECT_GE(fb->translated.sport, 32768);
  // The remote's reply to b's translated port finds b, in the reply direction.
  FlowKey reply{kRemote, kNatIp, 53, fb->translated.sport, kIpProtoUdp};
  TrackResult t = ct.find(reply);
  EXPECT_EQ(t.flow, fb);
  EXPECT_EQ(t.direction, Direction::kReply);
  // The untranslated reverse tuple is not a reply of a NAT connection.
  EXPECT_EQ(ct.find(b.reversed()).flow, nullptr);
  ct.expire(10 * kSec + 31 * kSec);
  EXPECT_EQ(ct.size(), 0u);
  EXPECT_EQ(ct.find(reply).flow, nullptr);
  // Expired translations are free again.
  EXPECT_EQ(ct.create_snat(b, kNatIp, 50 * kSec)->translated.sport, 4000);
}

TEST(NatConntrackTest, SupportedPacketsAndForwards) {
  EXPECT_TRUE(
      nat_supported(make(kInner, kRemote, icmp_echo(8, 1, 1), kIpProtoIcmp).bytes.data() + 0,
                    make(kInner, kRemote, icmp_echo(8, 1, 1), kIpProtoIcmp).parsed));
  Packet unreachable = make(kInner, kRemote, Bytes{3, 1, 0, 0, 0, 0, 0, 0}, kIpProtoIcmp);
  EXPECT_FALSE(nat_supported(unreachable.bytes.data(), unreachable.parsed));
  PortForwards f;
  ASSERT_TRUE(f.add(PortForward{kIpProtoTcp, 8080, "lan", kInner, 80}));
  EXPECT_FALSE(f.add(PortForward{kIpProtoTcp, 8080, "lan", kInner, 81}));
  EXPECT_TRUE(f.add(PortForward{kIpProtoUdp, 8080, "lan", kInner, 81}));
  EXPECT_EQ(f.find(kIpProtoTcp, 8080)->port, 80);
  f.remove_network("lan");
  EXPECT_TRUE(f.list().empty());
  EXPECT_FALSE(port_forward_from_json(Json{{"network", "x"}, {"host_port", 1}, {"to", "1.2.3.4"}}));
  EXPECT_FALSE(
      port_forward_from_json(Json{{"network", "x"}, {"host_port", 70000}, {"to", "1.2.3.4:80"}}));
  auto ok = port_forward_from_json(
      Json{{"network", "x"}, {"host_port", "443"}, {"to", "10.1.0.5:8443"}, {"protocol", "tcp"}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->host_port, 443);
  EXPECT_EQ(ok->port, 8443);
}

}  // namespace
}  // namespace vireo::net
