#include "network/parser.h"

#include <gtest/gtest.h>

#include <random>

#include "network/test_frames.h"

namespace vireo::net {
namespace {

using namespace testing;

Bytes udp_frame(uint16_t sport, uint16_t dport, const Bytes& payload, int vlan = -1) {
  return concat(ethernet(mac(2), mac(1), kEtherTypeIpv4, vlan),
                ipv4(ip4(10, 0, 0, 1), ip4(10, 0, 0, 2), kIpProtoUdp, udp(sport, dport, payload)));
}

DropReason parse(const Bytes& b, ParsedFrame& out) {
  return parse_frame(b.data(), uint32_t(b.size()), out);
}

TEST(ParserTest, ParsesUdpOverVlanWithOffsets) {
  Bytes b = udp_frame(1000, 2000, Bytes(10, 0xab), 42);
  ParsedFrame p;
  ASSERT_EQ(parse(b, p), DropReason::kNone);
  EXPECT_TRUE(p.tagged);
  EXPECT_EQ(p.vlan_id, 42);
  EXPECT_EQ(p.l3, 18u);
  EXPECT_EQ(p.l4, 38u);
  EXPECT_EQ(p.l4_kind, L4::kUdp);
  EXPECT_EQ(p.src_port, 1000);
  EXPECT_EQ(p.dst_port, 2000);
  EXPECT_EQ(p.payload_len, 10u);
}

TEST(ParserTest, EveryTruncationOfValidFramesIsDroppedNotOverread) {
  std::vector<Bytes> frames = {
      udp_frame(1, 2, Bytes(20, 1)),
      udp_frame(68, 67, dhcp_discover(mac(1))),
      udp_frame(5555, kVxlanPort, vxlan(7, udp_frame(1, 2, {}))),
      concat(ethernet(kBroadcast, mac(1), kEtherTypeArp),
             arp(1, mac(1), ip4(10, 0, 0, 1), Mac{}, ip4(10, 0, 0, 2))),
      concat(ethernet(mac(2), mac(1), kEtherTypeIpv4, 5),
             ipv4(1, 2, kIpProtoTcp, tcp(1, 2, 0x02, Bytes(3, 0)))),
      concat(ethernet(mac(2), mac(1), kEtherTypeIpv4),
             ipv4(1, 2, kIpProtoIcmp, icmp_echo(8, 1, 1))),
  };
  for (const Bytes& full : frames) {
    ParsedFrame p;
    ASSERT_EQ(parse(full, p), DropReason::kNone);
    for (size_t n = 0; n < full.size(); ++n) {
      // An exact-size heap copy lets ASan catch any read past the end.
      std::vector<uint8_t> cut(full.begin(), full.begin() + long(n));
      DropReason r = parse_frame(cut.data(), uint32_t(n), p);
      EXPECT_NE(r, DropReason::kNone) << "length " << n << " of " << full.size();
    }
  }
}

TEST(ParserTest, RejectsShortEthernet) {
  ParsedFrame p;
  EXPECT_EQ(parse(Bytes(13, 0), p), DropReason::kEthTruncated);
  EXPECT_EQ(parse_frame(nullptr, 0, p), DropReason::kEthTruncated);
}

TEST(ParserTest, RejectsStackedVlanTags) {
  Bytes b = ethernet(mac(2), mac(1), kEtherTypeVlan, 10);
  append16(b, 20);
  append16(b, kEtherTypeIpv4);
  ParsedFrame p;
  EXPECT_EQ(parse(b, p), DropReason::kVlanStacked);
}

TEST(ParserTest, RejectsBadIpv4Fields) {
  ParsedFrame p;
  Bytes good = udp_frame(1, 2, Bytes(4, 0));
  Bytes b = good;
  b[14] = 0x65;  // version 6
  EXPECT_EQ(parse(b, p), DropReason::kIpv4BadVersion);
  b = good;
  b[14] = 0x44;  // IHL 16 bytes
  EXPECT_EQ(parse(b, p), DropReason::kIpv4BadHeaderLength);
  b = good;
  b[14] = 0x4f;  // IHL 60 bytes, more than the frame holds
  EXPECT_EQ(parse(b, p), DropReason::kIpv4BadHeaderLength);
  b = good;
  store_be16(b.data() + 16, uint16_t(b.size()));  // total length past the frame
  EXPECT_EQ(parse(b, p), DropReason::kIpv4BadTotalLength);
  b = good;
  store_be16(b.data() + 16, 19);
  EXPECT_EQ(parse(b, p), DropReason::kIpv4BadTotalLength);
  b = good;
  b[14 + 8] ^= 1;  // TTL changed without fixing the checksum
  EXPECT_EQ(parse(b, p), DropReason::kIpv4BadChecksum);
  ParseOptions skip{.ipv4_checksum = ChecksumCheck::kSkip};
  EXPECT_EQ(parse_frame(b.data(), uint32_t(b.size()), p, skip), DropReason::kNone);
}

TEST(ParserTest, AcceptsEthernetPaddingAfterDatagram) {
  Bytes b = udp_frame(1, 2, {});
  b.resize(60, 0);
  ParsedFrame p;
  ASSERT_EQ(parse(b, p), DropReason::kNone);
  EXPECT_EQ(p.ip_len, 28u);
  EXPECT_EQ(p.payload_len, 0u);
}

void set_frag(Bytes& b, uint16_t flags_offset) {
  uint8_t* ip = b.data() + 14;
  store_be16(ip + 6, flags_offset);
  store_be16(ip + 10, 0);
  store_be16(ip + 10, checksum(ip, 20));
}

TEST(ParserTest, FlagsFragmentsAndSkipsL4OfLaterOnes) {
  ParsedFrame p;
  Bytes first = udp_frame(1, 2, Bytes(16, 0));
  store_be16(first.data() + 14 + 20 + 4, 1000);  // UDP length of the whole datagram
  set_frag(first, 0x2000);
  ASSERT_EQ(parse(first, p), DropReason::kNone);
  EXPECT_TRUE(p.fragment);
  EXPECT_FALSE(p.later_fragment);
  EXPECT_EQ(p.l4_kind, L4::kUdp);

  Bytes later = udp_frame(1, 2, Bytes(16, 0));
  set_frag(later, 100);
  ASSERT_EQ(parse(later, p), DropReason::kNone);
  EXPECT_TRUE(p.later_fragment);
  EXPECT_EQ(p.l4_kind, L4::kNone);
}

TEST(ParserTest, RejectsFragmentReassemblingPast64K) {
  Bytes b = udp_frame(1, 2, Bytes(100, 0));
  set_frag(b, 0x1fff);  // offset 65528 + 108 bytes
  ParsedFrame p;
  EXPECT_EQ(parse(b, p), DropReason::kIpv4BadFragment);
}

TEST(ParserTest, RejectsBadUdpLengths) {
  ParsedFrame p;
  Bytes b = udp_frame(1, 2, Bytes(8, 0));
  store_be16(b.data() + 14 + 20 + 4, 7);
  EXPECT_EQ(parse(b, p), DropReason::kUdpBadLength);
  store_be16(b.data() + 14 + 20 + 4, 17);
  EXPECT_EQ(parse(b, p), DropReason::kUdpBadLength);
}

TEST(ParserTest, RejectsBadTcpDataOffset) {
  Bytes b = concat(ethernet(mac(2), mac(1), kEtherTypeIpv4),
                   ipv4(1, 2, kIpProtoTcp, tcp(1, 2, 0x10, Bytes(8, 0))));
  ParsedFrame p;
  b[14 + 20 + 12] = 0x40;  // 16 bytes
  EXPECT_EQ(parse(b, p), DropReason::kTcpBadHeaderLength);
  b[14 + 20 + 12] = 0xf0;  // 60 bytes, more than the segment
  EXPECT_EQ(parse(b, p), DropReason::kTcpBadHeaderLength);
  b[14 + 20 + 12] = 0x70;  // 28 bytes: options inside the segment
  EXPECT_EQ(parse(b, p), DropReason::kNone);
  EXPECT_EQ(p.payload_len, 0u);
}

TEST(ParserTest, ParsesVxlanAndRejectsMissingIFlag) {
  Bytes inner = udp_frame(1, 2, {});
  ParsedFrame p;
  Bytes b = udp_frame(40000, kVxlanPort, vxlan(0xabcdef, inner));
  ASSERT_EQ(parse(b, p), DropReason::kNone);
  EXPECT_EQ(p.app, App::kVxlan);
  EXPECT_EQ(p.vni, 0xabcdefu);
  EXPECT_EQ(p.inner, 14u + 20 + 8 + 8);
  ParsedFrame q;
  EXPECT_EQ(parse_frame(b.data() + p.inner, uint32_t(b.size() - p.inner), q), DropReason::kNone);

  b = udp_frame(40000, kVxlanPort, vxlan(1, inner, 0x00));
  EXPECT_EQ(parse(b, p), DropReason::kVxlanBadFlags);
  b = udp_frame(40000, kVxlanPort, vxlan(1, Bytes(5, 0)));
  EXPECT_EQ(parse(b, p), DropReason::kVxlanTruncated);
}

TEST(ParserTest, RejectsArpGarbage) {
  ParsedFrame p;
  Bytes good = concat(ethernet(kBroadcast, mac(1), kEtherTypeArp),
                      arp(1, mac(1), ip4(10, 0, 0, 1), Mac{}, ip4(10, 0, 0, 2)));
  ASSERT_EQ(parse(good, p), DropReason::kNone);
  for (size_t field : {0u, 2u, 4u, 5u, 7u}) {
    Bytes b = good;
    b[14 + field] ^= 0x5a;
    EXPECT_EQ(parse(b, p), DropReason::kArpBadFormat) << "field " << field;
  }
}

TEST(ParserTest, ParsesDhcpTypeAndRejectsGarbage) {
  ParsedFrame p;
  Bytes msg = dhcp_discover(mac(1));
  ASSERT_EQ(parse(udp_frame(68, 67, msg), p), DropReason::kNone);
  EXPECT_EQ(p.app, App::kDhcp);
  EXPECT_EQ(p.dhcp_type, 1);

  Bytes bad_magic = msg;
  bad_magic[236] = 0;
  EXPECT_EQ(parse(udp_frame(68, 67, bad_magic), p), DropReason::kDhcpBadFormat);
  Bytes overrun = msg;
  overrun.resize(240);
  append(overrun, {12, 200, 'a'});  // option length past the end
  EXPECT_EQ(parse(udp_frame(68, 67, overrun), p), DropReason::kDhcpBadOptions);
  Bytes bad_type = msg;
  bad_type.resize(240);
  append(bad_type, {53, 2, 1, 1, 255});
  EXPECT_EQ(parse(udp_frame(68, 67, bad_type), p), DropReason::kDhcpBadOptions);
  EXPECT_EQ(parse(udp_frame(68, 67, Bytes(100, 1)), p), DropReason::kDhcpTruncated);
}

TEST(ParserTest, RandomGarbageNeverCrashes) {
  std::mt19937 rng(1234);
  Bytes seed = udp_frame(68, 67, dhcp_discover(mac(1)));
  ParsedFrame p;
  for (int i = 0; i < 20000; ++i) {
    Bytes b = seed;
    b.resize(rng() % (seed.size() + 1));
    for (int k = 0; k < 4 && !b.empty(); ++k) b[rng() % b.size()] = uint8_t(rng());
    (void)parse(b, p);
    EXPECT_LE(p.l4, b.size() + 0u);
  }
}

}  // namespace
}  // namespace vireo::net
