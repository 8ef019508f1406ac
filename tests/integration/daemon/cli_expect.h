#pragma once
// Expectations on `vireo` runs against a test daemon, shared by the daemon test areas.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include <fmt/ranges.h>

#include "base/json.h"
#include "daemon_process.h"

namespace vireo::testing {

// `vireo --format json ARGS`, expected to succeed; its output parsed (null when it failed).
inline Json cli_json(const DaemonProcess& d, std::vector<std::string> args) {
  args.insert(args.begin(), {"--format", "json"});
  auto r = d.cli(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? parse_json(r.out).value_or(Json()) : Json();
}

// Refused: exit status 1, nothing on stdout, one line on stderr (containing says, if given).
inline void expect_refused(const DaemonProcess& d, const std::vector<std::string>& args,
                           const std::string& says = "") {
  auto r = d.cli(args);
  std::string cmd = fmt::format("vireo {}", fmt::join(args, " "));
  EXPECT_EQ(r.exit_code, 1) << cmd << ": " << r.out << r.err;
  EXPECT_TRUE(r.out.empty()) << cmd << ": " << r.out;
  EXPECT_FALSE(r.err.empty()) << cmd;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << cmd << ": " << r.err;
  if (!says.empty()) {
    EXPECT_NE(r.err.find(says), std::string::npos) << cmd << ": " << r.err;
  }
}

}  // namespace vireo::testing
