// Rootless: an unprivileged user runs containers with vireo-runtime alone (no setuid helper),
// from the spec `vireo-runtime spec --rootless` writes: its uid mapped to root in a user
// namespace, state in its own directory, no cgroup.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "container/default_spec.h"
#include "runtime_fixture.h"

namespace vireo::container::testing {
namespace {

namespace fs = std::filesystem;

constexpr uid_t kNobody = 65534;

class RootlessTest : public RuntimeTest {
 protected:
  void SetUp() override {
    RuntimeTest::SetUp();
    state_ = root_ / "rootless-state";
    fs::create_directories(state_);
    ASSERT_EQ(::chown(state_.c_str(), kNobody, kNobody), 0);
  }
  Json rootless_config(std::vector<std::string> args) const {
    Json c = default_spec(SpecOptions{true, kNobody, kNobody});
    c["root"]["path"] = rootfs_.string();
    c["process"]["terminal"] = false;
    c["process"]["args"] = args;
    c["mounts"].push_back(Json{{"destination", "/tmp"},
                               {"type", "tmpfs"},
                               {"source", "tmpfs"},
                               {"options", {"nosuid", "nodev", "size=8m"}}});
    return c;
  }
  // vireo-runtime as the unprivileged user, with no capabilities at all.
  Output as_user(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {"/usr/bin/setpriv", "--reuid=65534",   "--regid=65534",
                                     "--clear-groups",   "--inh-caps=-all", "--bounding-set=-all",
                                     runtime_bin_,       "--root",          state_.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return spawn(argv, root_, 20);
  }
  fs::path state_;
};

TEST_F(RootlessTest, UnprivilegedUserRunsAContainerAsItsOwnRoot) {
  std::string id = new_id();
  fs::path b = bundle(rootless_config({"/bin/sh", "-c",
                                       "id; cat /proc/self/uid_map; hostname; "
                                       "touch /tmp/x && echo tmp-ok; echo $$"}),
                      id);
  Output o = as_user({"run", "--bundle", b.string(), id});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out,
            "uid=0(root) gid=0(root)\n         0      65534          1\n"
            "vireo\ntmp-ok\n1\n");
  EXPECT_FALSE(fs::exists(state_ / id));
}

TEST_F(RootlessTest, LifecycleWorksAndPauseExplainsWhyNot) {
  std::string id = new_id();
  fs::path b = bundle(rootless_config({"/bin/sleep", "100"}), id);
  ASSERT_EQ(as_user({"create", "--bundle", b.string(), id}).exit_code, 0);
  EXPECT_NE(as_user({"state", id}).out.find("\"created\""), std::string::npos);
  ASSERT_EQ(as_user({"start", id}).exit_code, 0);
  EXPECT_NE(as_user({"state", id}).out.find("\"running\""), std::string::npos);
  Output paused = as_user({"pause", id});
  EXPECT_NE(paused.exit_code, 0);
  EXPECT_EQ(paused.err,
            "vireo-runtime: pause and resume need a cgroup; the container runs without one "
            "(rootless)\n");
  EXPECT_EQ(as_user({"kill", id, "KILL"}).exit_code, 0);
  Output deleted = as_user({"delete", "--force", id});
  EXPECT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_FALSE(fs::exists(state_ / id));
}

TEST_F(RootlessTest, LimitsWithoutADelegatedCgroupFailClearly) {
  std::string id = new_id();
  Json c = rootless_config({"/bin/true"});
  c["linux"]["resources"]["pids"] = {{"limit", 10}};
  Output o = as_user({"run", "--bundle", bundle(c, id).string(), id});
  EXPECT_NE(o.exit_code, 0);
  EXPECT_NE(o.err.find("rootless: linux.resources needs a cgroup this user may write"),
            std::string::npos)
      << o.err;
  EXPECT_FALSE(fs::exists(state_ / id));
}

}  // namespace
}  // namespace vireo::container::testing
