#include "compute/cpu_pinning.h"

#include <gtest/gtest.h>

namespace vireo::compute {
namespace {

TEST(CpuPinningTest, OneOnlineHostCpuPerVcpu) {
  EXPECT_TRUE(validate_pinning({0, 1}, 2, 2));
  EXPECT_TRUE(validate_pinning({1, 1}, 2, 2)) << "two vCPUs may share a host CPU";
  auto few = validate_pinning({0}, 2, 2);
  ASSERT_FALSE(few);
  EXPECT_NE(few.error().message().find("1 host CPUs for 2 vCPUs"), std::string::npos);
  auto absent = validate_pinning({0, 7}, 2, 2);
  ASSERT_FALSE(absent);
  EXPECT_NE(absent.error().message().find("host CPU 7 does not exist (this host has 0-1)"),
            std::string::npos);
  EXPECT_FALSE(validate_pinning({-1}, 1, 2));
}

TEST(CpuPinningTest, ThreadsComeInVcpuOrder) {
  auto threads = vcpu_threads(Json::parse(R"([
    {"cpu-index": 1, "thread-id": 202, "qom-path": "/machine/unattached/device[1]"},
    {"cpu-index": 0, "thread-id": 101}])"));
  ASSERT_TRUE(threads);
  EXPECT_EQ(*threads, (std::vector<pid_t>{101, 202}));
  EXPECT_FALSE(vcpu_threads(Json::parse(R"([{"cpu-index": 0}])")));
  EXPECT_FALSE(vcpu_threads(Json::object()));
}

}  // namespace
}  // namespace vireo::compute
