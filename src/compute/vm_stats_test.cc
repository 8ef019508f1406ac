#include "compute/vm_stats.h"

#include <gtest/gtest.h>
#include <unistd.h>

namespace vireo::compute {
namespace {

TEST(VmStatsTest, ProcStatCpuTimeSkipsACommandWithSpacesAndParentheses) {
  const uint64_t tick_ns = 1'000'000'000ull / uint64_t(::sysconf(_SC_CLK_TCK));
  auto ns = parse_proc_stat_cpu_ns(
      "1234 (qemu (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 99 1 2\n");
  ASSERT_TRUE(ns) << ns.error().message();
  EXPECT_EQ(*ns, 300 * tick_ns);
  EXPECT_FALSE(parse_proc_stat_cpu_ns("garbage"));
  EXPECT_FALSE(parse_proc_stat_cpu_ns("1 (a) S 1 2"));
  EXPECT_FALSE(parse_proc_stat_cpu_ns("1 (a) S 1 1 1 0 -1 0 0 0 0 0 x 50 0"));
}

TEST(VmStatsTest, BlockstatsNameDisksByTheirDeviceId) {
  Json reply = Json::parse(R"([
    {"device": "", "node-name": "disk0-fmt", "qdev": "/machine/peripheral/disk0/virtio-backend",
     "stats": {"rd_bytes": 4096, "wr_bytes": 8192, "rd_operations": 1, "wr_operations": 2,
               "flush_operations": 3}},
    {"device": "legacy", "stats": {"rd_bytes": 1}},
    {"qdev": "/machine/peripheral/disk1/virtio-backend", "stats": "not an object"},
    "junk"
  ])");
  auto disks = parse_blockstats(reply);
  ASSERT_EQ(disks.size(), 3u);
  EXPECT_EQ(disks[0].id, "disk0");
  EXPECT_EQ(disks[0].read_bytes, 4096u);
  EXPECT_EQ(disks[0].written_bytes, 8192u);
  EXPECT_EQ(disks[0].flush_ops, 3u);
  EXPECT_EQ(disks[1].id, "legacy");
  EXPECT_EQ(disks[2].id, "disk1");
  EXPECT_EQ(disks[2].read_bytes, 0u);
  EXPECT_TRUE(parse_blockstats(Json::object()).empty());
}

TEST(VmStatsTest, GuestMemoryOnlyOnceTheDriverReported) {
  EXPECT_FALSE(parse_guest_stats(Json::parse(R"({"stats": {"stat-free-memory": -1},
                                                 "last-update": 0})"))
                   .free);
  auto m = parse_guest_stats(Json::parse(R"({"last-update": 1700000000,
      "stats": {"stat-total-memory": 268435456, "stat-free-memory": 200000000,
                "stat-available-memory": -1}})"));
  EXPECT_EQ(m.total, 268435456u);
  EXPECT_EQ(m.free, 200000000u);
  EXPECT_FALSE(m.available) << "-1 is QEMU's unset";
  EXPECT_FALSE(parse_guest_stats(Json("x")).total);
}

}  // namespace
}  // namespace vireo::compute
