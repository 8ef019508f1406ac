#include "monitor/log_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace vireo::monitor {
namespace {

namespace fs = std::filesystem;

class LogWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("vireo-log-writer-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<LogWriter> writer(LogLimits limits = {}) {
    auto w = LogWriter::create(dir_.string(), limits);
    EXPECT_TRUE(w) << w.error().message();
    return std::move(*w);
  }

  std::vector<nlohmann::json> entries(const std::string& name = "ctr.log") const {
    std::ifstream in(dir_ / name);
    std::vector<nlohmann::json> out;
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
  }

  fs::path dir_;
  timespec now_{1764293892, 5};
};

TEST_F(LogWriterTest, WritesOneEntryPerLineWithStreamAndTime) {
  auto w = writer();
  ASSERT_TRUE(w->write(Stream::kStdout, "one\ntwo\n", now_));
  ASSERT_TRUE(w->write(Stream::kStderr, "oops\n", now_));
  auto e = entries();
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0]["log"], "one\n");
  EXPECT_EQ(e[0]["stream"], "stdout");
  EXPECT_EQ(e[0]["time"], "2025-11-28T01:38:12.000000005Z");
  EXPECT_FALSE(e[0].contains("partial"));
  EXPECT_EQ(e[1]["log"], "two\n");
  EXPECT_EQ(e[2]["log"], "oops\n");
  EXPECT_EQ(e[2]["stream"], "stderr");
}

TEST_F(LogWriterTest, JoinsALineSplitAcrossReadsAndKeepsStreamsApart) {
  auto w = writer();
  ASSERT_TRUE(w->write(Stream::kStdout, "hel", now_));
  ASSERT_TRUE(w->write(Stream::kStderr, "err", now_));
  EXPECT_TRUE(entries().empty());
  ASSERT_TRUE(w->write(Stream::kStdout, "lo\nnext", now_));
  ASSERT_TRUE(w->write(Stream::kStderr, "or\n", now_));
  auto e = entries();
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0]["log"], "hello\n");
  EXPECT_EQ(e[1]["log"], "error\n");
  EXPECT_EQ(e[1]["stream"], "stderr");
}

TEST_F(LogWriterTest, FlushWritesUnterminatedTailAsPartial) {
  auto w = writer();
  ASSERT_TRUE(w->write(Stream::kStdout, "done\nprompt$ ", now_));
  ASSERT_TRUE(w->flush(now_));
  auto e = entries();
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[1]["log"], "prompt$ ");
  EXPECT_EQ(e[1]["partial"], true);
  ASSERT_TRUE(w->flush(now_));  // nothing held: nothing written
  EXPECT_EQ(entries().size(), 2u);
}

TEST_F(LogWriterTest, SplitsLongLinesIntoPartialPiecesThatJoinBack) {
  auto w = writer();
  std::string line(LogWriter::kMaxEntry * 2 + 100, 'x');
  line += '\n';
  // Fed in odd-sized reads, as a pipe delivers it.
  for (size_t at = 0; at < line.size(); at += 5000)
    ASSERT_TRUE(w->write(Stream::kStdout, std::string_view(line).substr(at, 5000), now_));
  auto e = entries();
  ASSERT_EQ(e.size(), 3u);
  std::string joined;
  for (size_t i = 0; i < e.size(); ++i) {
    joined += e[i]["log"].get<std::string>();
    EXPECT_LE(e[i]["log"].get<std::string>().size(), LogWriter::kMaxEntry);
    EXPECT_EQ(e[i].contains("partial"), i + 1 < e.size()) << i;
  }
  EXPECT_EQ(joined, line);
}

TEST_F(LogWriterTest, LineOfExactlyMaxEntryBytesIsNotPartial) {
  auto w = writer();
  std::string line(LogWriter::kMaxEntry, 'y');
  // In one read: a newline that only arrives with the next read cannot be waited for.
  ASSERT_TRUE(w->write(Stream::kStdout, line + "\n", now_));
  auto e = entries();
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0]["log"], line + "\n");
  EXPECT_FALSE(e[0].contains("partial"));
}

TEST_F(LogWriterTest, DoesNotSplitAMultiByteCharacter) {
  auto w = writer();
  std::string line(LogWriter::kMaxEntry - 1, 'a');
  line += "\xe2\x82\xac";  // starts at the last byte of the first piece
  line += "\n";
  ASSERT_TRUE(w->write(Stream::kStdout, line, now_));
  auto e = entries();
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0]["log"].get<std::string>(), std::string(LogWriter::kMaxEntry - 1, 'a'));
  EXPECT_EQ(e[1]["log"], "\xe2\x82\xac\n");
}

TEST_F(LogWriterTest, EscapesControlCharactersAndInvalidUtf8) {
  auto w = writer();
  ASSERT_TRUE(w->write(Stream::kStdout, std::string("a\"\\\t\x01\xff\n", 7), now_));
  std::ifstream in(dir_ / "ctr.log");
  std::string raw;
  std::getline(in, raw);
  EXPECT_NE(raw.find(R"("log":"a\"\\\t\u0001\ufffd\n")"), std::string::npos) << raw;
}

TEST_F(LogWriterTest, RotatesBeforeAFileWouldExceedTheLimitAndDropsTheOldest) {
  // Each entry of "NNN\n" is 74 bytes of JSON; 3 fit in 250 bytes.
  auto w = writer({250, 3});
  for (int i = 100; i < 112; ++i)
    ASSERT_TRUE(w->write(Stream::kStdout, std::to_string(i) + "\n", now_));
  EXPECT_TRUE(fs::exists(dir_ / "ctr.log"));
  EXPECT_TRUE(fs::exists(dir_ / "ctr.log.1"));
  EXPECT_TRUE(fs::exists(dir_ / "ctr.log.2"));
  EXPECT_FALSE(fs::exists(dir_ / "ctr.log.3"));
  for (const char* f : {"ctr.log", "ctr.log.1", "ctr.log.2"})
    EXPECT_LE(fs::file_size(dir_ / f), 250u);
  auto current = entries(), older = entries("ctr.log.1"), oldest = entries("ctr.log.2");
  ASSERT_EQ(current.size(), 3u);
  ASSERT_EQ(older.size(), 3u);
  ASSERT_EQ(oldest.size(), 3u);
  EXPECT_EQ(oldest[0]["log"], "103\n");  // 100..102 were dropped with the oldest file
  EXPECT_EQ(older[0]["log"], "106\n");
  EXPECT_EQ(current[2]["log"], "111\n");
}

TEST_F(LogWriterTest, EntryLargerThanTheLimitGetsAFileOfItsOwn) {
  auto w = writer({100, 2});
  ASSERT_TRUE(w->write(Stream::kStdout, "a\n", now_));
  ASSERT_TRUE(w->write(Stream::kStdout, std::string(200, 'b') + "\n", now_));
  ASSERT_TRUE(w->write(Stream::kStdout, "c\n", now_));
  EXPECT_EQ(entries("ctr.log.1").size(), 1u);
  EXPECT_EQ(entries("ctr.log.1")[0]["log"].get<std::string>().size(), 201u);
  ASSERT_EQ(entries().size(), 1u);
  EXPECT_EQ(entries()[0]["log"], "c\n");
}

TEST_F(LogWriterTest, OneFileMeansTruncateOnRotation) {
  auto w = writer({150, 1});
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(w->write(Stream::kStdout, std::to_string(i) + "\n", now_));
  EXPECT_FALSE(fs::exists(dir_ / "ctr.log.1"));
  auto e = entries();
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0]["log"], "4\n");
}

TEST_F(LogWriterTest, MaxSizeZeroNeverRotates) {
  auto w = writer({0, 3});
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(w->write(Stream::kStdout, "line\n", now_));
  EXPECT_FALSE(fs::exists(dir_ / "ctr.log.1"));
  EXPECT_EQ(entries().size(), 1000u);
}

TEST_F(LogWriterTest, AppendsToAnExistingLogAndCountsItsSize) {
  std::ofstream(dir_ / "ctr.log") << std::string(90, 'z') << "\n";
  auto w = writer({150, 2});
  EXPECT_EQ(w->file_size(), 91u);
  ASSERT_TRUE(w->write(Stream::kStdout, "new\n", now_));
  EXPECT_TRUE(fs::exists(dir_ / "ctr.log.1"));
  EXPECT_EQ(entries().size(), 1u);
}

TEST(Utf8CompletePrefixTest, DropsAnIncompleteSequenceAtTheEnd) {
  EXPECT_EQ(utf8_complete_prefix("abc"), 3u);
  EXPECT_EQ(utf8_complete_prefix("ab\xe2\x82\xac"), 5u);
  EXPECT_EQ(utf8_complete_prefix("ab\xe2\x82"), 2u);
  EXPECT_EQ(utf8_complete_prefix("ab\xe2"), 2u);
  EXPECT_EQ(utf8_complete_prefix("a\xf0\x9f\x98"), 1u);
  EXPECT_EQ(utf8_complete_prefix("\x80\x80\x80\x80"), 4u);  // not UTF-8: kept whole
  EXPECT_EQ(utf8_complete_prefix("\xe2"), 1u);
}

}  // namespace
}  // namespace vireo::monitor
