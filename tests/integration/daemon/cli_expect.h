#pragma once
// Expectations on `vireo` runs against a test daemon, shared by the daemon test areas.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <fmt/ranges.h>

#include "api/event.h"
#include "base/json.h"
#include "client/client.h"
#include "daemon_process.h"

namespace vireo::testing {

// Runs argv to its end (bounded); a failure to run is exit code -1 with the reason in err.
inline ProcessResult run(const std::vector<std::string>& argv) {
  auto r = run_process(argv, {.timeout = std::chrono::seconds(60)});
  return r ? *r : ProcessResult{.exit_code = -1, .err = r.error().message()};
}

// Imports busybox:1 into d: /bin/busybox with tools linked to it, and /tmp. Empty on success,
// else what failed.
inline std::string import_busybox(const DaemonProcess& d, const std::vector<std::string>& tools) {
  namespace fs = std::filesystem;
  fs::path rootfs = d.dir() / "rootfs";
  fs::create_directories(rootfs / "bin");
  fs::create_directories(rootfs / "tmp");
  fs::copy_file("/bin/busybox", rootfs / "bin" / "busybox");
  for (const auto& tool : tools) fs::create_symlink("busybox", rootfs / "bin" / tool);
  std::string tar = (d.dir() / "busybox.tar").string();
  auto r = run({"tar", "-C", rootfs.string(), "-cf", tar, "."});
  if (r.exit_code != 0) return "tar: " + r.err;
  r = d.cli({"image", "import", tar, "--tag", "busybox:1"});
  return r.exit_code == 0 ? "" : "import: " + r.err;
}

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

// Records lifecycle events ("action source") from its construction until one with the action
// `last` arrives. ready() once subscribed (bounded); events() joins the watcher and returns
// them (ctest's timeout bounds a wait for an event that never comes).
class LifecycleRecorder {
 public:
  LifecycleRecorder(const DaemonProcess& d, std::string last) {
    watcher_ = std::thread([this, socket = d.socket(), last = std::move(last)] {
      auto c = client::Client::connect({.socket_path = socket});
      if (!c) return subscribed_.set_value();
      (void)(*c)->watch_events(
          {"lifecycle"},
          [&](const api::Event& e) {
            std::string action = e.metadata.value("action", "");
            seen_.push_back(action + " " + e.metadata.value("source", ""));
            return action != last;
          },
          [&] {
            subscribed_.set_value();
            return true;
          });
    });
  }
  ~LifecycleRecorder() {
    if (watcher_.joinable()) watcher_.join();
  }
  bool ready() {
    return subscribed_.get_future().wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  }
  const std::vector<std::string>& events() {
    watcher_.join();
    return seen_;
  }

 private:
  std::promise<void> subscribed_;
  std::vector<std::string> seen_;
  std::thread watcher_;
};

}  // namespace vireo::testing
