#include "monitor/options.h"

#include <arpa/inet.h>
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

TEST(OptionsTest, ParsesNetnsAndPublishedPorts) {
  auto args = base();
  for (const char* a : {"--netns", "/run/netns/n1", "--publish", "tcp:0.0.0.0:8080:10.88.0.2:80",
                        "--publish=udp:127.0.0.1:53:10.88.0.2:5353"})
    args.push_back(a);
  auto o = parse_options(args);
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o->netns, "/run/netns/n1");
  ASSERT_EQ(o->publish.size(), 2u);
  EXPECT_EQ(o->publish[0].proto, Proto::kTcp);
  EXPECT_EQ(o->publish[0].host_ip, 0u);
  EXPECT_EQ(o->publish[0].host_port, 8080);
  EXPECT_EQ(o->publish[0].ctr_ip, htonl(0x0A580002));
  EXPECT_EQ(o->publish[0].ctr_port, 80);
  EXPECT_EQ(o->publish[1].proto, Proto::kUdp);
  EXPECT_EQ(o->publish[1].host_ip, htonl(0x7F000001));
  EXPECT_EQ(o->publish[1].host_port, 53);
  EXPECT_EQ(o->publish[1].ctr_port, 5353);
}

TEST(OptionsTest, PublishNeedsNetns) {
  auto args = base();
  args.push_back("--publish");
  args.push_back("tcp:0.0.0.0:8080:10.88.0.2:80");
  auto o = parse_options(args);
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().message(), "--netns is required with --publish");
}

TEST(OptionsTest, RejectsMalformedPublishNamingTheValue) {
  for (const char* bad :
       {"", "tcp:0.0.0.0:8080:10.0.0.2", "tcp:0.0.0.0:8080:10.0.0.2:80:1",
        "sctp:0.0.0.0:8080:10.0.0.2:80", "TCP:0.0.0.0:8080:10.0.0.2:80",
        "tcp:0.0.0:8080:10.0.0.2:80", "tcp:0.0.0.256:8080:10.0.0.2:80",
        "tcp:0.0.0.0.0:8080:10.0.0.2:80", "tcp:::1:8080:10.0.0.2:80", "tcp:0.0.0.0:0:10.0.0.2:80",
        "tcp:0.0.0.0:65536:10.0.0.2:80", "tcp:0.0.0.0:-1:10.0.0.2:80",
        "tcp:0.0.0.0:80x:10.0.0.2:80", "tcp:0.0.0.0:8080:10.0.0.2:", "tcp:0.0.0.0:8080:10.0.0.2:0",
        "tcp:0.0.0.0:8080:localhost:80", "tcp: 0.0.0.0:8080:10.0.0.2:80",
        "tcp:00001.0.0.0:8080:10.0.0.2:80"}) {
    auto args = base();
    for (const char* a : {"--netns", "/n", "--publish", bad}) args.push_back(a);
    auto o = parse_options(args);
    ASSERT_FALSE(o) << bad;
    EXPECT_EQ(o.error().message().rfind("--publish: \"" + std::string(bad) + "\": ", 0), 0u)
        << o.error().message();
  }
  EXPECT_EQ(parse_publish("udp:1.2.3.4:1:5.6.7.8:0").error().message(),
            "--publish: \"udp:1.2.3.4:1:5.6.7.8:0\": container port must be a number from 1 to "
            "65535");
}

TEST(OptionsTest, RejectsAnEmptyNetns) {
  auto args = base();
  args.push_back("--netns=");
  auto o = parse_options(args);
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().message(), "--netns: empty path");
}

}  // namespace
}  // namespace vireo::monitor
