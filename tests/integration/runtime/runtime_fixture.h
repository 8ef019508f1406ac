#pragma once
// Shared set-up for the vireo-runtime integration tests: a busybox rootfs built once per test
// binary from the busybox-static package, a private state root, per-test bundles and container
// IDs, cgroups under /vireo-test-<pid>, and helpers that run the runtime (or runc) with output
// captured in files, so a container that inherits stdio cannot keep a pipe open.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "base/json.h"

namespace vireo::container::testing {

struct Output {
  int exit_code = -1;
  std::string out, err;
};

class RuntimeTest : public ::testing::Test {
 public:
  static void SetUpTestSuite();
  static void TearDownTestSuite();

 protected:
  void SetUp() override;
  void TearDown() override;

  // A config for args on the shared read-only rootfs, with the default security profile,
  // its own cgroup, hostname "vireo-test".
  Json config(std::vector<std::string> args) const;
  // Writes config (with the cgroup of container id) into a new bundle directory.
  std::filesystem::path bundle(Json config, const std::string& id);
  std::string new_id();

  // Runs `vireo-runtime --root <root> args...` (or another runtime binary), bounded in time.
  Output runtime(const std::vector<std::string>& args, int timeout_s = 20) const;
  Output runc(const std::vector<std::string>& args, int timeout_s = 20) const;
  // `run` of config in a fresh bundle: the container's exit code and output.
  Output run(const Json& config);

  // The container's cgroup directory for a v1 controller or the v2 directory.
  std::string cgroup_dir(const std::string& id, const std::string& controller) const;
  bool state_dir_exists(const std::string& id) const;
  bool any_cgroup_exists(const std::string& id) const;
  bool rootfs_is_mounted() const;

  static std::filesystem::path tmp_;
  static std::filesystem::path rootfs_;
  static std::string runtime_bin_;
  std::filesystem::path root_;        // --root of this test
  std::vector<std::string> created_;  // IDs to force-delete in TearDown
  int bundles_ = 0;
};

// Runs argv with stdout/stderr in files under dir; kills it after timeout_s.
Output spawn(const std::vector<std::string>& argv, const std::filesystem::path& dir, int timeout_s,
             int keep_fd = -1);

}  // namespace vireo::container::testing
