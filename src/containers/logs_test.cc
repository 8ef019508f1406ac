#include "containers/logs.h"

#include <gtest/gtest.h>

#include <fstream>

#include "base/json.h"

namespace vireo::containers {
namespace {

namespace fs = std::filesystem;

class LogsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vireo-logs-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::string entry(int second, int nanos, const std::string& stream, const std::string& log,
                           bool partial = false) {
    Json j = {{"time", fmt::format("2026-11-28T01:00:{:02}.{:09}Z", second, nanos)},
              {"stream", stream},
              {"log", log}};
    if (partial) j["partial"] = true;
    return j.dump() + "\n";
  }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::app) << text;
  }
  static std::vector<std::string> texts(const LogPage& p) {
    std::vector<std::string> out;
    for (const auto& l : p.lines) out.push_back(l.log);
    return out;
  }

  fs::path dir_;
};

TEST_F(LogsTest, RotatedFilesOldestFirstWithTailAndSince) {
  write("ctr.log.2", entry(1, 0, "stdout", "one\n"));
  write("ctr.log.1", entry(2, 0, "stderr", "two\n") + entry(3, 0, "stdout", "three\n"));
  write("ctr.log", entry(4, 0, "stdout", "four\n"));
  auto all = read_logs(dir_, {});
  ASSERT_TRUE(all);
  EXPECT_EQ(texts(*all), (std::vector<std::string>{"one\n", "two\n", "three\n", "four\n"}));
  EXPECT_EQ(all->lines[1].stream, "stderr");
  EXPECT_EQ(all->lines[0].time, "2026-11-28T01:00:01.000000000Z");

  auto tail = read_logs(dir_, {.tail = 2});
  ASSERT_TRUE(tail);
  EXPECT_EQ(texts(*tail), (std::vector<std::string>{"three\n", "four\n"}));
  auto none = read_logs(dir_, {.tail = 0});
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->lines.empty());
  EXPECT_EQ(none->cursor, all->cursor);

  auto since = read_logs(dir_, {.since_ns = parse_since("2026-11-28T01:00:03Z").value()});
  ASSERT_TRUE(since);
  EXPECT_EQ(texts(*since), (std::vector<std::string>{"three\n", "four\n"}));
}

TEST_F(LogsTest, CursorFollowsAcrossRotationAndEqualTimes) {
  write("ctr.log", entry(1, 5, "stdout", "a\n") + entry(1, 5, "stdout", "b\n"));
  auto first = read_logs(dir_, {});
  ASSERT_TRUE(first);
  EXPECT_EQ(first->lines.size(), 2u);
  auto again = read_logs(dir_, {.cursor = first->cursor});
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->lines.empty());
  EXPECT_EQ(again->cursor, first->cursor);

  // Rotation moves the read lines to ctr.log.1; new ones with the same time stamp follow.
  fs::rename(dir_ / "ctr.log", dir_ / "ctr.log.1");
  write("ctr.log", entry(1, 5, "stdout", "c\n") + entry(2, 0, "stderr", "d\n"));
  auto next = read_logs(dir_, {.cursor = first->cursor});
  ASSERT_TRUE(next);
  EXPECT_EQ(texts(*next), (std::vector<std::string>{"c\n", "d\n"}));
}

// Partial entries pass as they are: printed in order they make the line again, and the last
// piece of output without a newline (a container that exited after `echo -n`) is not held back.
TEST_F(LogsTest, PartialEntriesPassInOrder) {
  write("ctr.log", entry(1, 0, "stdout", "long ", true) + entry(1, 1, "stderr", "err\n") +
                       entry(1, 2, "stdout", "li", true));
  auto p = read_logs(dir_, {});
  ASSERT_TRUE(p);
  EXPECT_EQ(texts(*p), (std::vector<std::string>{"long ", "err\n", "li"}));
  write("ctr.log", entry(1, 3, "stdout", "ne\n"));
  auto q = read_logs(dir_, {.cursor = p->cursor});
  ASSERT_TRUE(q);
  EXPECT_EQ(texts(*q), (std::vector<std::string>{"ne\n"}));
}

TEST_F(LogsTest, MissingLogAndBadInput) {
  auto p = read_logs(dir_ / "none", {});
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->lines.empty());
  EXPECT_FALSE(read_logs(dir_, {.cursor = "garbage"}));
  write("ctr.log", "{not json\n" + entry(1, 0, "stdout", "ok\n") + "{\"time\":\"x\"}\n");
  auto q = read_logs(dir_, {});
  ASSERT_TRUE(q);
  EXPECT_EQ(texts(*q), (std::vector<std::string>{"ok\n"}));
}

TEST(LogTimeTest, ParsesRfc3339AndUnixSeconds) {
  EXPECT_EQ(parse_rfc3339_ns("1970-01-01T00:00:01.5Z").value(), 1500000000);
  EXPECT_EQ(parse_rfc3339_ns("1970-01-01T01:00:00+01:00").value(), 0);
  EXPECT_EQ(parse_rfc3339_ns("2026-11-28T01:45:03.632330299Z").value() % 1000000000, 632330299);
  EXPECT_FALSE(parse_rfc3339_ns("2026-11-28 01:45:03Z"));
  EXPECT_FALSE(parse_rfc3339_ns("2026-11-28T01:45:03"));
  EXPECT_EQ(parse_since("12.5").value(), 12500000000);
  EXPECT_FALSE(parse_since("yesterday"));
  EXPECT_FALSE(parse_since("-1"));
}

}  // namespace
}  // namespace vireo::containers
