#include "monitor/oom.h"

#include <gtest/gtest.h>

namespace vireo::monitor {
namespace {

constexpr std::string_view kHybridMountinfo =
    "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "31 25 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "32 25 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
constexpr std::string_view kHybridCgroup = "5:pids:/vireo/c1\n4:memory:/vireo/c1\n0::/vireo/c1\n";

TEST(OomTest, UsesV1MemoryControllerWhenV2HasNoMemoryEvents) {
  auto c = find_oom_counter(kHybridCgroup, kHybridMountinfo, [](const std::string& p) {
    return p == "/sys/fs/cgroup/memory/vireo/c1/memory.oom_control";
  });
  ASSERT_TRUE(c);
  EXPECT_EQ(c->path, "/sys/fs/cgroup/memory/vireo/c1/memory.oom_control");
}

TEST(OomTest, PrefersV2MemoryEvents) {
  auto c =
      find_oom_counter(kHybridCgroup, kHybridMountinfo, [](const std::string&) { return true; });
  ASSERT_TRUE(c);
  EXPECT_EQ(c->path, "/sys/fs/cgroup/unified/vireo/c1/memory.events");
}

TEST(OomTest, FindsNothingWithoutAMemoryCgroup) {
  EXPECT_FALSE(
      find_oom_counter("1:pids:/x\n", kHybridMountinfo, [](const std::string&) { return true; }));
}

TEST(OomTest, ParsesOomKillCounter) {
  EXPECT_EQ(parse_oom_kills("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n"), 2u);
  EXPECT_EQ(parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n"), 5u);
  EXPECT_EQ(parse_oom_kills("oom_kill_disable 0\n"), 0u);
}

}  // namespace
}  // namespace vireo::monitor
