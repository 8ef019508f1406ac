#include "compute/accel.h"

#include <gtest/gtest.h>

namespace vireo::compute {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

TEST(AccelTest, ProbeReturnsQuicklyAndConsistently) {
  auto start = std::chrono::steady_clock::now();
  auto first = probe_accelerator();
  auto second = probe_accelerator();
  auto took = std::chrono::steady_clock::now() - start;
  // Two probes, each bounded by the 50 ms budget plus VM set-up; the margin is for loaded hosts.
  EXPECT_LT(took, milliseconds(1000));
  EXPECT_EQ(first.accelerator, second.accelerator);
  EXPECT_EQ(first.kvm_usable, second.kvm_usable);
  EXPECT_TRUE(first.accelerator == "kvm" || first.accelerator == "tcg");
  EXPECT_EQ(first.kvm_usable, first.accelerator == "kvm");
  EXPECT_FALSE(first.reason.empty());
  EXPECT_EQ(first.reason.find('\n'), std::string::npos);
}

TEST(AccelTest, MissingDeviceMeansTcg) {
  auto info = probe_accelerator_at("/nonexistent/kvm");
  EXPECT_EQ(info.accelerator, "tcg");
  EXPECT_FALSE(info.kvm_present);
  EXPECT_NE(info.reason.find("/nonexistent/kvm is not available"), std::string::npos);
}

TEST(AccelTest, DeviceThatIsNotKvmMeansTcg) {
  auto info = probe_accelerator_at("/dev/null");
  EXPECT_EQ(info.accelerator, "tcg");
  EXPECT_FALSE(info.kvm_present);
  EXPECT_NE(info.reason.find("does not speak KVM"), std::string::npos);
}

TEST(AccelTest, FastExitsMeanKvm) {
  auto info = decide_accelerator({.exits = 200, .elapsed = microseconds(600), .completed = true});
  EXPECT_EQ(info.accelerator, "kvm");
  EXPECT_TRUE(info.kvm_usable);
  EXPECT_NE(info.reason.find("3.0 us per VM exit"), std::string::npos) << info.reason;
}

TEST(AccelTest, SlowExitsMeanTcg) {
  auto info = decide_accelerator({.exits = 200, .elapsed = milliseconds(30), .completed = true});
  EXPECT_EQ(info.accelerator, "tcg");
  EXPECT_TRUE(info.kvm_present);
  EXPECT_NE(info.reason.find("150.0 us per VM exit"), std::string::npos) << info.reason;
}

TEST(AccelTest, ProbeOverBudgetMeansTcg) {
  auto info = decide_accelerator({.exits = 40, .elapsed = milliseconds(51), .completed = false});
  EXPECT_EQ(info.accelerator, "tcg");
  EXPECT_NE(info.reason.find("only 40 VM exits"), std::string::npos) << info.reason;
}

}  // namespace
}  // namespace vireo::compute
