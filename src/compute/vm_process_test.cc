// VmProcess without QEMU: start failures, attach to run directories where nothing runs, and the
// helpers. The runner with real QEMU is tested in tests/integration/compute.
#include "compute/vm_process.h"

#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "base/file.h"
#include "base/ids.h"

namespace vireo::compute {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class VmProcessUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vireo-vmproc-" + random_hex(4));
    fs::create_directories(dir_);
    std::string image(4096, '\0');
    image[0x1fe] = '\x55';
    image[0x1ff] = '\xaa';
    image.replace(0x202, 4, "HdrS");
    std::ofstream(dir_ / "bzImage", std::ios::binary) << image;
    spec_ = {.name = "vm1", .kernel = (dir_ / "bzImage").string()};
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  VmSpec spec_;
};

TEST_F(VmProcessUnitTest, EmulatorExitingAtOnceFailsStartWithItsStatus) {
  auto vm = VmProcess::start(spec_, dir_ / "run", {.qemu_binary = "false"});
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(vm.error().message().find("QEMU exited with status 1 during start"), std::string::npos)
      << vm.error().message();
  // The log names the command that was run.
  EXPECT_NE(tail_lines(dir_ / "run" / "qemu.log", 5).find("starting: false -S"), std::string::npos);
}

TEST_F(VmProcessUnitTest, MissingEmulatorFailsStart) {
  auto vm = VmProcess::start(spec_, dir_ / "run", {.qemu_binary = "/nonexistent/qemu"});
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code(), ErrorCode::kNotFound) << vm.error().message();
}

TEST_F(VmProcessUnitTest, EmulatorThatNeverListensTimesOutAndIsKilled) {
  auto fake = dir_ / "fake-qemu";
  ASSERT_TRUE(write_file_atomic(fake, "#!/bin/sh\nexec sleep 30\n", 0755));
  auto start = std::chrono::steady_clock::now();
  auto vm =
      VmProcess::start(spec_, dir_ / "run", {.qemu_binary = fake.string(), .start_timeout = 200ms});
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code(), ErrorCode::kTimeout) << vm.error().message();
  // Returning at all proves the rollback reaped the fake: it would sleep for 30 s otherwise.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_F(VmProcessUnitTest, AttachWithoutPidfileIsNotFound) {
  auto vm = VmProcess::attach(dir_ / "run");
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code(), ErrorCode::kNotFound);
}

TEST_F(VmProcessUnitTest, AttachToStalePidfileIsNotFoundAndShowsTheLog) {
  fs::create_directories(dir_ / "run");
  // Our own pid is alive but is not a QEMU started with this run directory's pidfile.
  ASSERT_TRUE(write_file_atomic(dir_ / "run" / "qemu.pid", std::to_string(::getpid()) + "\n"));
  ASSERT_TRUE(write_file_atomic(dir_ / "run" / "qemu.log", "qemu: something went wrong\n"));
  auto vm = VmProcess::attach(dir_ / "run");
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(vm.error().message().find("is gone"), std::string::npos) << vm.error().message();
  EXPECT_NE(vm.error().message().find("something went wrong"), std::string::npos);
  ASSERT_TRUE(write_file_atomic(dir_ / "run" / "qemu.pid", "garbage"));
  EXPECT_FALSE(VmProcess::attach(dir_ / "run"));
}

TEST(TailLinesTest, KeepsTheLastLines) {
  auto path = fs::temp_directory_path() / ("vireo-tail-" + random_hex(4));
  ASSERT_TRUE(write_file_atomic(path, "a\nb\nc\nd\n"));
  EXPECT_EQ(tail_lines(path, 2), "c\nd\n");
  EXPECT_EQ(tail_lines(path, 10), "a\nb\nc\nd\n");
  fs::remove(path);
  EXPECT_EQ(tail_lines(path, 2), "");
}

TEST(ExitInfoTest, DescribesHowQemuEnded) {
  EXPECT_EQ((ExitInfo{.status_known = true, .exit_code = 0, .shutdown_reason = "guest-shutdown"}
                 .describe()),
            "exited with status 0 (guest-shutdown)");
  EXPECT_EQ((ExitInfo{.status_known = true, .term_signal = 9}.describe()),
            "killed by signal 9 (Killed)");
  EXPECT_NE(ExitInfo{}.describe().find("status unknown"), std::string::npos);
}

}  // namespace
}  // namespace vireo::compute
