#include "monitor/options.h"

#include <gtest/gtest.h>

namespace vireo::monitor {
namespace {

std::vector<std::string> base() {
  return {"--id", "c1", "--bundle", "/b", "--runtime", "/r", "--state-dir", "/s"};
}

TEST(OptionsTest, ParsesRequiredOptionsWithDefaults) {
  auto o = parse_options(base());
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o->id, "c1");
  EXPECT_EQ(o->bundle, "/b");
  EXPECT_EQ(o->runtime, "/r");
  EXPECT_EQ(o->state_dir, "/s");
  EXPECT_EQ(o->terminal, Terminal::kPipes);
  EXPECT_EQ(o->stdin_mode, Stdin::kNull);
  EXPECT_EQ(o->log_max_size, 10u * 1024 * 1024);
  EXPECT_EQ(o->log_max_files, 5);
  EXPECT_EQ(o->ready_fd, -1);
  EXPECT_FALSE(o->accepts_input());
}

TEST(OptionsTest, ParsesEveryOptionInBothForms) {
  auto args = base();
  for (const char* a : {"--tty", "--stdin", "--runtime-root=/root", "--log-max-size", "4096",
                        "--log-max-files=2", "--ready-fd", "7"})
    args.push_back(a);
  auto o = parse_options(args);
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o->terminal, Terminal::kTty);
  EXPECT_EQ(o->stdin_mode, Stdin::kOpen);
  EXPECT_EQ(o->runtime_root, "/root");
  EXPECT_EQ(o->log_max_size, 4096u);
  EXPECT_EQ(o->log_max_files, 2);
  EXPECT_EQ(o->ready_fd, 7);
  EXPECT_TRUE(o->accepts_input());
}

TEST(OptionsTest, RejectsMissingRequiredOption) {
  auto o = parse_options({"--id", "c1", "--bundle", "/b", "--runtime", "/r"});
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().message(), "--state-dir is required");
}

TEST(OptionsTest, RejectsBadValues) {
  for (auto extra : std::vector<std::vector<std::string>>{{"--log-max-size", "10k"},
                                                          {"--log-max-size", "-1"},
                                                          {"--log-max-files", "0"},
                                                          {"--ready-fd", ""},
                                                          {"--bogus", "1"},
                                                          {"--ready-fd"}}) {
    auto args = base();
    args.insert(args.end(), extra.begin(), extra.end());
    EXPECT_FALSE(parse_options(args)) << extra[0];
  }
}

TEST(OptionsTest, RejectsIdsThatAreNotFileNames) {
  for (const char* id : {"a/b", "..", "a b", "x;y"}) {
    auto args = base();
    args[1] = id;
    EXPECT_FALSE(parse_options(args)) << id;
  }
}

}  // namespace
}  // namespace vireo::monitor
