#include "monitor/process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "monitor/monitor.h"

namespace vireo::monitor {
namespace {

namespace fs = std::filesystem;

class ProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vireo-monitor-process-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(ProcessTest, WriteFileAtomicReplacesWholeFileAndLeavesNoTemporary) {
  std::ofstream(dir_ / "exit.json") << "old content that is longer";
  ASSERT_TRUE(write_file_atomic(dir_.string(), "exit.json", "{\"exit_code\":0}\n"));
  EXPECT_EQ(read_small_file((dir_ / "exit.json").string()), "{\"exit_code\":0}\n");
  EXPECT_FALSE(fs::exists(dir_ / "exit.json.tmp"));
}

TEST_F(ProcessTest, WriteFileAtomicReportsAMissingDirectory) {
  auto r = write_file_atomic((dir_ / "missing").string(), "f", "x");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("No such file or directory"), std::string::npos)
      << r.error().message();
}

TEST_F(ProcessTest, SpawnGivesTheChildTheChosenStdioAndReturnsItsStatus) {
  int out = ::open((dir_ / "out").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  auto pid = spawn({"sh", "-c", "echo hi; exit 7"}, null, out, null);
  ASSERT_TRUE(pid) << pid.error().message();
  auto status = wait_for(*pid);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 7);
  EXPECT_EQ(read_small_file((dir_ / "out").string()), "hi\n");
  EXPECT_EQ(describe_status("sh", *status), "sh exited with status 7");
  ::close(out);
  ::close(null);
}

TEST_F(ProcessTest, SpawnOfAMissingProgramFails) {
  auto pid = spawn({"/no/such/program"}, 0, 1, 2);
  ASSERT_FALSE(pid);
  EXPECT_EQ(pid.error().message(), "start /no/such/program: No such file or directory");
}

TEST(ReadyLineTest, ErrorIsOneLineOfValidJson) {
  EXPECT_EQ(ready_error_line("create: \"bad\"\nsecond line"),
            R"({"error":"create: \"bad\"\nsecond line"})");
}

TEST(DescribeStatusTest, NamesTheSignal) {
  EXPECT_EQ(describe_status("runtime", SIGKILL), "runtime was killed by signal 9");
}

}  // namespace
}  // namespace vireo::monitor
