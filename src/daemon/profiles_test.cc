#include "daemon/profiles.h"

#include <gtest/gtest.h>

#include "daemon/host_facts.h"

namespace vireo::daemon {
namespace {

TEST(ProfilesTest, FillsDefaults) {
  auto p = validate_profile(Json::object());
  ASSERT_TRUE(p);
  EXPECT_EQ(*p,
            (Json{{"description", ""}, {"config", Json::object()}, {"devices", Json::object()}}));
}

TEST(ProfilesTest, AcceptsConfigAndDevices) {
  auto p = validate_profile(Json::parse(
      R"({"description": "web", "config": {"limits.cpu": "2"}, "devices": {"eth0": {"type": "nic", "network": "default"}}})"));
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ((*p)["devices"]["eth0"]["network"], "default");
}

TEST(ProfilesTest, RejectsBadFields) {
  EXPECT_EQ(validate_profile(Json{{"colour", "red"}}).error().message(),
            "unknown field 'colour' (a profile has description, config, devices)");
  EXPECT_EQ(validate_profile(Json{{"config", {{"a", 1}}}}).error().message(),
            "field 'config.a' must be a string");
  EXPECT_FALSE(validate_profile(Json{{"description", 5}}));
  EXPECT_FALSE(validate_profile(Json{{"devices", {{"eth0", {{"network", "x"}}}}}}));
  EXPECT_FALSE(validate_profile(Json{{"devices", {{"bad/name", {{"type", "nic"}}}}}}));
  EXPECT_FALSE(validate_profile(Json{{"description", std::string(2000, 'x')}}));
}

TEST(HostFactsTest, ReportsThisHost) {
  auto h = gather_host_facts();
  EXPECT_FALSE(h.kernel.empty());
  EXPECT_GT(h.cpus, 0);
  EXPECT_GT(h.memory_bytes, 0u);
  EXPECT_TRUE(h.cgroup_mode == "v1" || h.cgroup_mode == "v2" || h.cgroup_mode == "hybrid");
  EXPECT_TRUE(h.accelerator == "kvm" || h.accelerator == "tcg");
  EXPECT_FALSE(h.accelerator_reason.empty());
}

}  // namespace
}  // namespace vireo::daemon
