#include "network/switch.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "network/test_frames.h"

namespace vireo::net {
namespace {

using namespace testing;

constexpr uint64_t kSec = 1'000'000'000ull;

PortConfig access(uint16_t vlan, uint32_t mtu = 1500) {
  PortConfig c;
  c.access_vlan = vlan;
  c.mtu = mtu;
  return c;
}

PortConfig trunk(std::initializer_list<uint16_t> vlans, uint16_t native = 0) {
  PortConfig c;
  c.mode = VlanMode::kTrunk;
  for (uint16_t v : vlans) c.trunk_vlans.set(v);
  c.native_vlan = native;
  return c;
}

class SwitchTest : public ::testing::Test {
 protected:
  struct Result {
    Decision d;
    std::vector<Egress> out;
    std::vector<PortId> ports() const {
      std::vector<PortId> p;
      for (const Egress& e : out) p.push_back(e.port);
      std::sort(p.begin(), p.end());
      return p;
    }
  };

  Result send(PortId in, Mac src, Mac dst, int vlan = -1, size_t payload = 46) {
    Bytes f = concat(ethernet(dst, src, 0x88b5, vlan), Bytes(payload, 0));
    ParsedFrame p;
    EXPECT_EQ(parse_frame(f.data(), uint32_t(f.size()), p), DropReason::kNone);
    Egress buf[16];
    Result r;
    r.d = sw_.forward(in, f.data(), p, uint32_t(payload), now_, buf);
    r.out.assign(buf, buf + r.d.count);
    return r;
  }

  Switch sw_{1024, 300 * kSec};
  uint64_t now_ = 1000 * kSec;
};

TEST_F(SwitchTest, FloodsUnknownThenForwardsLearnedUnicast) {
  for (PortId p : {0, 1, 2}) sw_.set_port(p, access(4096));
  auto r = send(0, mac(1), mac(2));
  EXPECT_EQ(r.ports(), (std::vector<PortId>{1, 2}));
  r = send(1, mac(2), mac(1));
  EXPECT_EQ(r.ports(), (std::vector<PortId>{0}));
  r = send(0, mac(1), mac(2));
  EXPECT_EQ(r.ports(), (std::vector<PortId>{1}));
}

TEST_F(SwitchTest, BroadcastGoesEverywhereButTheSourceEvenWhenLearned) {
  for (PortId p : {0, 1, 2, 3}) sw_.set_port(p, access(4096));
  send(1, mac(2), mac(1));
  auto r = send(0, mac(1), kBroadcast);
  EXPECT_EQ(r.ports(), (std::vector<PortId>{1, 2, 3}));
}

TEST_F(SwitchTest, FrameToOwnPortIsDroppedAsHairpin) {
  for (PortId p : {0, 1}) sw_.set_port(p, access(4096));
  send(0, mac(2), kBroadcast);
  auto r = send(0, mac(1), mac(2));
  EXPECT_EQ(r.d.drop, DropReason::kHairpin);
  EXPECT_TRUE(r.out.empty());
}

TEST_F(SwitchTest, LearnedAddressAgesOutAndIsFloodedAgain) {
  for (PortId p : {0, 1, 2}) sw_.set_port(p, access(4096));
  send(1, mac(2), kBroadcast);
  EXPECT_EQ(send(0, mac(1), mac(2)).ports(), (std::vector<PortId>{1}));
  now_ += 301 * kSec;
  EXPECT_EQ(send(0, mac(1), mac(2)).ports(), (std::vector<PortId>{1, 2}));
  sw_.fdb().expire(now_);
  EXPECT_EQ(sw_.fdb().size(), 1u);  // only mac(1), refreshed just now
}

TEST_F(SwitchTest, StationMoveUpdatesPort) {
  for (PortId p : {0, 1, 2}) sw_.set_port(p, access(4096));
  send(1, mac(2), kBroadcast);
  send(2, mac(2), kBroadcast);
  EXPECT_EQ(send(0, mac(1), mac(2)).ports(), (std::vector<PortId>{2}));
}

TEST_F(SwitchTest, AccessPortsOfDifferentNetworksAreIsolated) {
  sw_.set_port(0, access(10));
  sw_.set_port(1, access(10));
  sw_.set_port(2, access(20));
  EXPECT_EQ(send(0, mac(1), kBroadcast).ports(), (std::vector<PortId>{1}));
  send(2, mac(3), kBroadcast);
  // mac(3) is known, but in another network: flood within network 10 only.
  EXPECT_EQ(send(0, mac(1), mac(3)).ports(), (std::vector<PortId>{1}));
}

TEST_F(SwitchTest, TrunkPushesAndPopsTags) {
  sw_.set_port(0, access(10));
  sw_.set_port(1, trunk({10, 20}));
  sw_.set_port(2, access(20));
  auto r = send(0, mac(1), kBroadcast);
  ASSERT_EQ(r.out.size(), 1u);
  EXPECT_EQ(r.out[0].port, 1);
  EXPECT_EQ(r.out[0].tag, TagOp::kPush);
  r = send(1, mac(2), kBroadcast, 20);
  ASSERT_EQ(r.out.size(), 1u);
  EXPECT_EQ(r.out[0].port, 2);
  EXPECT_EQ(r.out[0].tag, TagOp::kPop);
  EXPECT_EQ(r.d.vlan, 20);
}

TEST_F(SwitchTest, TrunkDropsDisallowedAndUntaggedWithoutNative) {
  sw_.set_port(0, trunk({10}));
  sw_.set_port(1, access(10));
  EXPECT_EQ(send(0, mac(1), kBroadcast, 30).d.drop, DropReason::kVlanNotAllowed);
  EXPECT_EQ(send(0, mac(1), kBroadcast).d.drop, DropReason::kVlanNotAllowed);
  sw_.set_port(0, trunk({10}, 10));
  auto r = send(0, mac(1), kBroadcast);
  ASSERT_EQ(r.out.size(), 1u);
  EXPECT_EQ(r.out[0].tag, TagOp::kKeep);
}

TEST_F(SwitchTest, AccessPortDropsTaggedButAcceptsPriorityTag) {
  sw_.set_port(0, access(10));
  sw_.set_port(1, access(10));
  sw_.set_port(2, trunk({10}));
  EXPECT_EQ(send(0, mac(1), kBroadcast, 10).d.drop, DropReason::kVlanNotAllowed);
  auto r = send(0, mac(1), kBroadcast, 0);
  ASSERT_EQ(r.out.size(), 2u);
  for (const Egress& e : r.out) EXPECT_EQ(e.tag, e.port == 1 ? TagOp::kPop : TagOp::kRetag);
}

TEST_F(SwitchTest, MtuIsEnforcedOnIngressAndEgress) {
  sw_.set_port(0, access(10, 9000));
  sw_.set_port(1, access(10, 1500));
  sw_.set_port(2, access(10, 9000));
  auto r = send(0, mac(1), kBroadcast, -1, 4000);
  EXPECT_EQ(r.ports(), (std::vector<PortId>{2}));
  EXPECT_EQ(sw_.stats(1).tx_dropped, 1u);
  EXPECT_EQ(send(1, mac(2), kBroadcast, -1, 1501).d.drop, DropReason::kMtuExceeded);
}

TEST_F(SwitchTest, RemovedPortIsForgottenAndNotFlooded) {
  for (PortId p : {0, 1, 2}) sw_.set_port(p, access(10));
  send(1, mac(2), kBroadcast);
  sw_.remove_port(1);
  EXPECT_EQ(send(0, mac(1), mac(2)).ports(), (std::vector<PortId>{2}));
  EXPECT_EQ(send(1, mac(2), kBroadcast).d.drop, DropReason::kNoPort);
}

TEST(FdbTest, FullTableStopsLearningAndCounts) {
  Fdb fdb(16, 100);
  for (uint64_t m = 1; m <= 20; ++m) fdb.learn(1, m, 0, 0);
  EXPECT_EQ(fdb.size(), 12u);
  EXPECT_EQ(fdb.full_misses(), 8u);
}

TEST(FdbTest, EraseKeepsCollidingEntriesFindable) {
  Fdb fdb(64, 1000);
  for (uint64_t m = 1; m <= 40; ++m) fdb.learn(uint16_t(m % 3), m, PortId(m % 5), 0);
  fdb.flush_port(2);
  for (uint64_t m = 1; m <= 40; ++m) {
    PortId want = m % 5 == 2 ? kNoPort : PortId(m % 5);
    EXPECT_EQ(fdb.lookup(uint16_t(m % 3), m, 1), want) << m;
  }
  fdb.flush_vlan(1);
  for (uint64_t m = 1; m <= 40; m += 3) EXPECT_EQ(fdb.lookup(1, m, 1), kNoPort);
  EXPECT_EQ(fdb.entries().size(), fdb.size());
}

}  // namespace
}  // namespace vireo::net
