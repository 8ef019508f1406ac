#include "network/firewall.h"

#include <gtest/gtest.h>

#include "network/test_frames.h"

namespace vireo::net {
namespace {

using namespace testing;

constexpr uint16_t kClientNet = 4096, kServerNet = 4097;
constexpr uint32_t kClient = ip4(10, 1, 0, 5), kServer = ip4(10, 2, 0, 7);
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

class FirewallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fw_.set_policy(kServerNet, FwPolicy{FwAction::kDeny, FwAction::kAllow});
    FwRule web;
    web.proto = kIpProtoTcp;
    web.port_lo = web.port_hi = 80;
    fw_.add_rule(kServerNet, web);
  }
  bool pass(uint16_t from, uint16_t to, const Packet& p) {
    return fw_.allow(from, to, p.bytes.data(), p.parsed, now_);
  }
  Firewall fw_;
  uint64_t now_ = 100 * kSec;
};

TEST_F(FirewallTest, AllowedPortPassesDeniedPortDoesNot) {
  EXPECT_TRUE(
      pass(kClientNet, kServerNet, make(kClient, kServer, tcp(40000, 80, 0x02), kIpProtoTcp)));
  EXPECT_FALSE(
      pass(kClientNet, kServerNet, make(kClient, kServer, tcp(40000, 22, 0x02), kIpProtoTcp)));
  EXPECT_EQ(fw_.rules(kServerNet)[0].hits, 1u);
}

TEST_F(FirewallTest, RepliesToOutboundConnectionsPassStatefully) {
  // Nothing may come in to the server network unasked...
  EXPECT_FALSE(
      pass(kClientNet, kServerNet, make(kClient, kServer, udp(53, 5000, {}), kIpProtoUdp)));
  // ...but the answer to what it sent out does, and the connection becomes established.
  EXPECT_TRUE(pass(kServerNet, kClientNet, make(kServer, kClient, udp(5000, 53, {}), kIpProtoUdp)));
  EXPECT_TRUE(pass(kClientNet, kServerNet, make(kClient, kServer, udp(53, 5000, {}), kIpProtoUdp)));
  ASSERT_EQ(fw_.conntrack().size(), 1u);
  EXPECT_EQ(fw_.conntrack().flows()[0].state, FlowState::kEstablished);
}

TEST_F(FirewallTest, TcpHandshakeEstablishesAndFinCloses) {
  ASSERT_TRUE(
      pass(kServerNet, kClientNet, make(kServer, kClient, tcp(3333, 443, 0x02), kIpProtoTcp)));
  EXPECT_TRUE(
      pass(kClientNet, kServerNet, make(kClient, kServer, tcp(443, 3333, 0x12), kIpProtoTcp)));
  EXPECT_EQ(fw_.conntrack().flows()[0].state, FlowState::kEstablished);
  EXPECT_TRUE(
      pass(kServerNet, kClientNet, make(kServer, kClient, tcp(3333, 443, 0x11), kIpProtoTcp)));
  EXPECT_EQ(fw_.conntrack().flows()[0].state, FlowState::kClosing);
}

TEST_F(FirewallTest, ConnectionsExpire) {
  ASSERT_TRUE(pass(kServerNet, kClientNet, make(kServer, kClient, udp(5000, 53, {}), kIpProtoUdp)));
  now_ += 31 * kSec;
  fw_.tick(now_);
  EXPECT_EQ(fw_.conntrack().size(), 0u);
  EXPECT_FALSE(
      pass(kClientNet, kServerNet, make(kClient, kServer, udp(53, 5000, {}), kIpProtoUdp)));
}

TEST_F(FirewallTest, IcmpEchoRepliesAndRelatedErrorsPass) {
  ASSERT_TRUE(
      pass(kServerNet, kClientNet, make(kServer, kClient, icmp_echo(8, 77, 1), kIpProtoIcmp)));
  EXPECT_TRUE(
      pass(kClientNet, kServerNet, make(kClient, kServer, icmp_echo(0, 77, 1), kIpProtoIcmp)));
  EXPECT_FALSE(
      pass(kClientNet, kServerNet, make(kClient, kServer, icmp_echo(8, 78, 1), kIpProtoIcmp)));
  // Port unreachable quoting the server's UDP packet: related to its connection.
  ASSERT_TRUE(pass(kServerNet, kClientNet, make(kServer, kClient, udp(6000, 9, {}), kIpProtoUdp)));
  Bytes quoted = ipv4(kServer, kClient, kIpProtoUdp, udp(6000, 9, {}));
  Bytes error = {3, 3, 0, 0, 0, 0, 0, 0};
  error.insert(error.end(), quoted.begin(), quoted.end());
  EXPECT_TRUE(pass(kClientNet, kServerNet, make(kClient, kServer, error, kIpProtoIcmp)));
}

TEST(FirewallRuleTest, ParsesAndRejectsRules) {
  auto r = fw_rule_from_json(Json{{"direction", "in"},
                                  {"protocol", "tcp"},
                                  {"port", "8000-8080"},
                                  {"cidr", "10.0.0.0/8"},
                                  {"action", "allow"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->port_lo, 8000);
  EXPECT_EQ(r->port_hi, 8080);
  EXPECT_EQ(to_json(*r)["port"], "8000-8080");
  EXPECT_FALSE(fw_rule_from_json(Json{{"action", "maybe"}}));
  EXPECT_FALSE(fw_rule_from_json(Json{{"protocol", "icmp"}, {"port", "80"}, {"action", "deny"}}));
  EXPECT_FALSE(fw_rule_from_json(Json{{"protocol", "tcp"}, {"port", "90-80"}, {"action", "deny"}}));
  EXPECT_FALSE(fw_rule_from_json(Json{{"protocol", "tcp"}, {"port", "99999"}, {"action", "deny"}}));
}

}  // namespace
}  // namespace vireo::net
