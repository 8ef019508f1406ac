#include "compute/console_log.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <condition_variable>
#include <filesystem>
#include <mutex>

#include <gtest/gtest.h>

#include "base/file.h"
#include "base/ids.h"

namespace vireo::compute {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A listening socket standing in for QEMU's console chardev.
class ConsoleLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vireo-console-" + random_hex(4));
    fs::create_directories(dir_);
    socket_path_ = (dir_ / "console.sock").string();
    listener_ = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, socket_path_.c_str());
    ASSERT_EQ(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener_.get(), 1), 0);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<ConsoleLog> open(uint64_t max_bytes = ConsoleLog::kDefaultMaxBytes) {
    auto console = ConsoleLog::open(socket_path_, dir_ / "console.log", max_bytes);
    EXPECT_TRUE(console) << console.error().message();
    guest_ = Fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    return console ? std::move(*console) : nullptr;
  }
  void guest_prints(const std::string& text) {
    ASSERT_EQ(::send(guest_.get(), text.data(), text.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(text.size()));
  }
  std::string log_content() { return read_file(dir_ / "console.log").value_or(""); }

  fs::path dir_;
  std::string socket_path_;
  Fd listener_, guest_;
};

TEST_F(ConsoleLogTest, WaitsForTextAndKeepsItInTheLogFile) {
  auto console = open();
  ASSERT_TRUE(console);
  guest_prints("booting...\n");
  guest_prints("VIREO-GUEST-");
  guest_prints("READY\n");
  ASSERT_TRUE(console->wait_for("VIREO-GUEST-READY", 5s));
  EXPECT_EQ(console->recent(), "booting...\nVIREO-GUEST-READY\n");
  console.reset();  // joins the reader: everything received is in the file
  EXPECT_EQ(log_content(), "booting...\nVIREO-GUEST-READY\n");
}

TEST_F(ConsoleLogTest, ForwardsInputToTheGuest) {
  auto console = open();
  ASSERT_TRUE(console);
  ASSERT_TRUE(console->write("ls /\n"));
  char buf[16] = {};
  pollfd pfd{guest_.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 5000), 1);
  EXPECT_EQ(::read(guest_.get(), buf, sizeof buf), 5);
  EXPECT_STREQ(buf, "ls /\n");
}

TEST_F(ConsoleLogTest, LogFileStaysBoundedAndKeepsTheNewestOutput) {
  auto console = open(1024);
  ASSERT_TRUE(console);
  for (int i = 0; i < 300; ++i) guest_prints(fmt::format("line {:04}\n", i));
  ASSERT_TRUE(console->wait_for("line 0299\n", 5s));
  EXPECT_LE(console->recent().size(), 1024u);
  console.reset();
  auto log = log_content();
  EXPECT_LE(log.size(), 1024u);
  EXPECT_TRUE(log.ends_with("line 0299\n"));
  EXPECT_EQ(log.find("line 0000"), std::string::npos);
}

TEST_F(ConsoleLogTest, AppendsToTheLogOfAPreviousConnection) {
  ASSERT_TRUE(write_file_atomic(dir_ / "console.log", "earlier\n"));
  auto console = open();
  ASSERT_TRUE(console);
  guest_prints("later\n");
  ASSERT_TRUE(console->wait_for("later", 5s));
  console.reset();
  EXPECT_EQ(log_content(), "earlier\nlater\n");
}

TEST_F(ConsoleLogTest, SubscribersReceiveOutputUntilTheyUnsubscribe) {
  auto console = open();
  ASSERT_TRUE(console);
  std::mutex m;
  std::string first, second;
  auto a = console->subscribe([&](std::string_view d) {
    std::lock_guard lock(m);
    first.append(d);
  });
  console->subscribe([&](std::string_view d) {
    std::lock_guard lock(m);
    second.append(d);
  });
  guest_prints("one\n");
  ASSERT_TRUE(console->wait_for("one\n", 5s));
  console->unsubscribe(a);
  std::string backlog;
  std::string third;
  console->subscribe(
      [&](std::string_view d) {
        std::lock_guard lock(m);
        third.append(d);
      },
      &backlog);
  guest_prints("two\n");
  ASSERT_TRUE(console->wait_for("two\n", 5s));
  std::lock_guard lock(m);
  EXPECT_EQ(first, "one\n");
  EXPECT_EQ(second, "one\ntwo\n");
  EXPECT_EQ(backlog + third, "one\ntwo\n");
}

TEST_F(ConsoleLogTest, SubscribersHearOfTheEndOnceAlsoWhenLate) {
  auto console = open();
  ASSERT_TRUE(console);
  std::mutex m;
  std::condition_variable cv;
  int ends = 0;
  auto on_chunk = [&](std::string_view d) {
    std::lock_guard lock(m);
    if (d.empty()) ++ends;
    cv.notify_all();
  };
  console->subscribe(on_chunk);
  guest_.reset();  // QEMU exits
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return ends == 1; }));
  }
  console->subscribe(on_chunk);  // after the end: told at once
  std::lock_guard lock(m);
  EXPECT_EQ(ends, 2);
}

TEST_F(ConsoleLogTest, ClosedConsoleEndsWaitingAtOnce) {
  auto console = open();
  ASSERT_TRUE(console);
  guest_.reset();
  auto start = std::chrono::steady_clock::now();
  auto r = console->wait_for("never printed", 10s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_F(ConsoleLogTest, WaitingTimesOut) {
  auto console = open();
  ASSERT_TRUE(console);
  auto r = console->wait_for("never printed", 50ms);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kTimeout);
}

TEST(ConsoleLogOpenTest, FailsWhenNobodyListens) {
  auto console = ConsoleLog::open("/nonexistent/console.sock", "/nonexistent/console.log");
  ASSERT_FALSE(console);
  EXPECT_EQ(console.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace vireo::compute
