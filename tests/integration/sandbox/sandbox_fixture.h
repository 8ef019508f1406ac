#pragma once
// Runs `vireo app ...` as root or as nobody with its own apps folder, home and package cache,
// all under one temporary folder that the test removes.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/file.h"
#include "base/subprocess.h"

namespace vireo::sandbox::testing {

namespace fs = std::filesystem;

constexpr uid_t kNobody = 65534;
enum class As { kRoot, kUser };

class SandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    char tmpl[] = "/tmp/vireo-sbx-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    ::chmod(root_.c_str(), 0755);
    for (const char* d : {"apps", "home", "cache", "user-apps", "user-home", "user-cache", "work"})
      fs::create_directories(root_ / d);
    for (const char* d : {"home/Documents", "user-home/Documents"})
      fs::create_directories(root_ / d);
    for (const char* d : {"user-apps", "user-home", "user-cache", "user-home/Documents"})
      ASSERT_EQ(::chown((root_ / d).c_str(), kNobody, kNobody), 0);
    const char* bin = std::getenv("VIREO_BIN_DIR");
    ASSERT_NE(bin, nullptr) << "run through ctest (VIREO_BIN_DIR)";
    vireo_ = std::string(bin) + "/vireo";
  }
  void TearDown() override {
    if (root_.empty()) return;
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  std::vector<std::string> env(As as) const {
    std::string p = as == As::kUser ? "user-" : "";
    return {"VIREO_APPS_DIR=" + (root_ / (p + "apps")).string(),
            "HOME=" + (root_ / (p + "home")).string(),
            "VIREO_APP_CACHE=" + (root_ / (p + "cache")).string()};
  }

  ProcessResult vireo(std::vector<std::string> args, As as = As::kRoot,
                      const std::string& input = {}) const {
    std::vector<std::string> argv;
    if (as == As::kUser)
      argv = {"/usr/bin/setpriv", "--reuid=65534",   "--regid=65534",
              "--clear-groups",   "--inh-caps=-all", "--bounding-set=-all"};
    argv.push_back("/usr/bin/env");
    for (const auto& e : env(as)) argv.push_back(e);
    argv.push_back(vireo_);
    argv.insert(argv.end(), args.begin(), args.end());
    RunOptions o;
    o.input = input;
    o.timeout = std::chrono::seconds(60);
    auto r = run_process(argv, o);
    EXPECT_TRUE(r) << (r ? "" : r.error().message());
    return r ? *r : ProcessResult{};
  }
  // vireo app run --name APP [extra...] -- sh -c SCRIPT
  ProcessResult sh(const std::string& app, const std::string& script, As as = As::kRoot,
                   std::vector<std::string> extra = {}) const {
    std::vector<std::string> args{"app", "run", "--name", app};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--", "/bin/sh", "-c", script});
    return vireo(args, as);
  }
  fs::path home(As as) const { return root_ / (as == As::kUser ? "user-home" : "home"); }
  fs::path store(As as, const std::string& app) const {
    return root_ / (as == As::kUser ? "user-apps" : "apps") / app / "store";
  }
  static std::string slurp(const fs::path& p) { return read_file(p).value_or("<missing>"); }

  fs::path root_;
  std::string vireo_;
};

}  // namespace vireo::sandbox::testing
