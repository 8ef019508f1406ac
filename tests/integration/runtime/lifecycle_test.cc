// Lifecycle, state and bad input: what the runtime reports and what it leaves behind.
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <functional>

#include <filesystem>
#include <fstream>

#include "runtime_fixture.h"

namespace vireo::container::testing {
namespace {

namespace fs = std::filesystem;

std::string status_of(const Output& state) {
  auto j = Json::parse(state.out, nullptr, false);
  return j.is_object() ? j.value("status", "") : "";
}

TEST_F(RuntimeTest, RunTrueExitsZero) {
  Output o = run(config({"/bin/true"}));
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.err, "");
}

TEST_F(RuntimeTest, ExitCodeIsPropagated) {
  Output o = run(config({"/bin/sh", "-c", "exit 42"}));
  EXPECT_EQ(o.exit_code, 42) << o.err;
}

TEST_F(RuntimeTest, OutputAndEnvironmentReachTheProcess) {
  Json c = config({"/bin/sh", "-c", "echo \"$GREETING from $(pwd)\""});
  c["process"]["env"].push_back("GREETING=hello");
  c["process"]["cwd"] = "/tmp";
  Output o = run(c);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "hello from /tmp\n");
}

TEST_F(RuntimeTest, LifecycleStatesFollowTheSpec) {
  std::string id = new_id();
  fs::path b = bundle(config({"/bin/sleep", "30"}), id);
  ASSERT_EQ(runtime({"create", "--bundle", b.string(), "--pid-file", (root_ / "pid").string(), id})
                .exit_code,
            0);
  Output state = runtime({"state", id});
  EXPECT_EQ(status_of(state), "created") << state.out << state.err;
  auto j = Json::parse(state.out);
  EXPECT_EQ(j["id"], id);
  EXPECT_EQ(j["bundle"], b.string());
  std::ifstream pid_file(root_ / "pid");
  int pid = 0;
  pid_file >> pid;
  EXPECT_EQ(j["pid"], pid);

  EXPECT_NE(runtime({"create", "--bundle", b.string(), id}).exit_code, 0)
      << "a second create with the same ID must fail";
  ASSERT_EQ(runtime({"start", id}).exit_code, 0);
  EXPECT_EQ(status_of(runtime({"state", id})), "running");
  EXPECT_NE(runtime({"start", id}).exit_code, 0) << "start of a running container must fail";

  Output list = runtime({"list", "--format", "json"});
  EXPECT_NE(list.out.find(id), std::string::npos) << list.out;

  ASSERT_EQ(runtime({"kill", id, "KILL"}).exit_code, 0);
  // The init is not our child: wait on its pidfd for it to be gone.
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    ::poll(&p, 1, 10000);
    ::close(pidfd);
  }
  EXPECT_EQ(status_of(runtime({"state", id})), "stopped");
  EXPECT_NE(runtime({"kill", id, "TERM"}).exit_code, 0) << "kill of a stopped container";
  EXPECT_EQ(runtime({"delete", id}).exit_code, 0);
  EXPECT_FALSE(state_dir_exists(id));
  EXPECT_FALSE(any_cgroup_exists(id));
  Output gone = runtime({"state", id});
  EXPECT_NE(gone.exit_code, 0);
  EXPECT_NE(gone.err.find("does not exist"), std::string::npos) << gone.err;
}

TEST_F(RuntimeTest, DeleteOfRunningContainerWithoutForceFailsAndChangesNothing) {
  std::string id = new_id();
  fs::path b = bundle(config({"/bin/sleep", "30"}), id);
  ASSERT_EQ(runtime({"create", "--bundle", b.string(), id}).exit_code, 0);
  ASSERT_EQ(runtime({"start", id}).exit_code, 0);
  std::string before = runtime({"state", id}).out;
  Output del = runtime({"delete", id});
  EXPECT_NE(del.exit_code, 0);
  EXPECT_NE(del.err.find("is running"), std::string::npos) << del.err;
  EXPECT_EQ(std::count(del.err.begin(), del.err.end(), '\n'), 1) << del.err;
  EXPECT_EQ(runtime({"state", id}).out, before);
  EXPECT_TRUE(state_dir_exists(id));
  EXPECT_TRUE(any_cgroup_exists(id));
  EXPECT_EQ(runtime({"delete", "--force", id}).exit_code, 0);
  EXPECT_FALSE(state_dir_exists(id));
  EXPECT_FALSE(any_cgroup_exists(id));
}

TEST_F(RuntimeTest, BadConfigsFailWithOneLineAndLeaveNothingBehind) {
  struct Case {
    const char* name;
    std::function<void(Json&)> edit;
    const char* message;
  };
  std::vector<Case> cases = {
      {"duplicate namespace",
       [](Json& c) {
         c["linux"]["namespaces"].push_back({{"type", "pid"}});
       },
       "linux.namespaces[6]: duplicate namespace type \"pid\""},
      {"missing rootfs", [](Json& c) { c["root"]["path"] = "/nonexistent/rootfs"; },
       "root.path: rootfs directory /nonexistent/rootfs does not exist"},
      {"wrong type", [](Json& c) { c["process"]["args"] = "true"; },
       "process.args: expected an array, got string"},
      {"missing cwd", [](Json& c) { c["process"].erase("cwd"); },
       "process.cwd: required field missing"},
      {"relative cwd", [](Json& c) { c["process"]["cwd"] = "tmp"; },
       "process.cwd: \"tmp\" must be an absolute path"},
      // Fails inside the init, after the cgroup, fifo and namespaces exist.
      {"bad bind source",
       [](Json& c) {
         c["mounts"].push_back({{"destination", "/mnt"},
                                {"type", "bind"},
                                {"source", "/nonexistent-source"},
                                {"options", {"rbind"}}});
       },
       "mount /mnt: source /nonexistent-source: No such file or directory"},
      {"missing program", [](Json& c) { c["process"]["args"] = {"/bin/nope"}; },
       "exec /bin/nope: No such file or directory"},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.name);
    Json c = config({"/bin/true"});
    tc.edit(c);
    std::string id = new_id();
    Output o = runtime({"create", "--bundle", bundle(c, id).string(), id});
    EXPECT_NE(o.exit_code, 0);
    EXPECT_NE(o.err.find(tc.message), std::string::npos) << o.err;
    EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << o.err;
    EXPECT_FALSE(state_dir_exists(id));
    EXPECT_FALSE(any_cgroup_exists(id));
    EXPECT_FALSE(rootfs_is_mounted());
  }
}

TEST_F(RuntimeTest, PauseResumeAndLiveUpdate) {
  std::string id = new_id();
  ASSERT_EQ(runtime({"create", "--bundle", bundle(config({"/bin/sleep", "30"}), id).string(), id})
                .exit_code,
            0);
  ASSERT_EQ(runtime({"start", id}).exit_code, 0);
  ASSERT_EQ(runtime({"pause", id}).exit_code, 0);
  EXPECT_EQ(status_of(runtime({"state", id})), "paused");
  EXPECT_NE(runtime({"pause", id}).exit_code, 0);
  ASSERT_EQ(runtime({"resume", id}).exit_code, 0);
  EXPECT_EQ(status_of(runtime({"state", id})), "running");

  ASSERT_EQ(runtime({"update", "--pids-limit", "17", "--memory", "50331648", id}).exit_code, 0);
  std::string pids = cgroup_dir(id, "pids") + "/pids.max";
  std::ifstream pids_max(pids);
  std::string value;
  pids_max >> value;
  EXPECT_EQ(value, "17");
  Output ps = runtime({"ps", "--format", "json", id});
  EXPECT_EQ(Json::parse(ps.out).size(), 1u) << ps.out;
}

TEST_F(RuntimeTest, SpecAndFeaturesAreValidJson) {
  Output f = runtime({"features"});
  ASSERT_EQ(f.exit_code, 0);
  EXPECT_EQ(Json::parse(f.out)["ociVersionMax"], "1.2.0");
  fs::path dir = root_ / "spec";
  fs::create_directories(dir);
  ASSERT_EQ(runtime({"spec", "--bundle", dir.string()}).exit_code, 0);
  EXPECT_EQ(Json::parse(std::ifstream(dir / "config.json"))["ociVersion"], "1.2.0");
  EXPECT_NE(runtime({"spec", "--bundle", dir.string()}).exit_code, 0) << "must not overwrite";
}

TEST_F(RuntimeTest, ExecJoinsTheRunningContainer) {
  std::string id = new_id();
  ASSERT_EQ(runtime({"run", "--detach", "--bundle",
                     bundle(config({"/bin/sleep", "30"}), id).string(), id})
                .exit_code,
            0);
  Output o = runtime({"exec", "--env", "X=y", id, "--", "/bin/sh", "-c",
                      "hostname; echo $X; test -d /proc/1 && echo pid1-visible; exit 4"});
  EXPECT_EQ(o.exit_code, 4) << o.err;
  // The container's uts and pid namespaces, the config's env plus --env.
  EXPECT_EQ(o.out, "vireo-test\ny\npid1-visible\n");
  Output user = runtime({"exec", "--user", "1000:1000", id, "--", "/bin/id"});
  EXPECT_EQ(user.out, "uid=1000 gid=1000\n") << user.err;
  Output bad = runtime({"exec", id, "--", "/bin/nope"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("exec /bin/nope: No such file or directory"), std::string::npos)
      << bad.err;
}

TEST_F(RuntimeTest, HooksRunWithStateAndAFailingHookFailsCreate) {
  std::string id = new_id();
  fs::path out = root_ / "hooks";
  fs::create_directories(out);
  auto hook = [&](const std::string& name) {
    return Json{{"path", "/bin/sh"},
                {"args", {"sh", "-c", "cat > " + (out / name).string()}},
                {"timeout", 5}};
  };
  Json c = config({"/bin/true"});
  c["hooks"] = {{"createRuntime", {hook("createRuntime")}},
                {"poststart", {hook("poststart")}},
                {"poststop", {hook("poststop")}}};
  fs::path b = bundle(c, id);
  ASSERT_EQ(runtime({"create", "--bundle", b.string(), id}).exit_code, 0);
  auto created = Json::parse(std::ifstream(out / "createRuntime"));
  EXPECT_EQ(created["id"], id);
  EXPECT_EQ(created["status"], "creating");
  EXPECT_GT(created["pid"].get<int>(), 0);
  ASSERT_EQ(runtime({"start", id}).exit_code, 0);
  EXPECT_EQ(Json::parse(std::ifstream(out / "poststart"))["id"], id);
  EXPECT_EQ(runtime({"delete", "--force", id}).exit_code, 0);
  EXPECT_EQ(Json::parse(std::ifstream(out / "poststop"))["status"], "stopped");

  std::string bad_id = new_id();
  c["hooks"] = {{"prestart", {{{"path", "/bin/false"}}}}};
  Output o = runtime({"create", "--bundle", bundle(c, bad_id).string(), bad_id});
  EXPECT_NE(o.exit_code, 0);
  EXPECT_NE(o.err.find("prestart hook /bin/false: failed with exit status 1"), std::string::npos)
      << o.err;
  EXPECT_FALSE(state_dir_exists(bad_id));
  EXPECT_FALSE(any_cgroup_exists(bad_id));

  std::string slow_id = new_id();
  c["hooks"] = {
      {"createRuntime", {{{"path", "/bin/sleep"}, {"args", {"sleep", "10"}}, {"timeout", 1}}}}};
  o = runtime({"create", "--bundle", bundle(c, slow_id).string(), slow_id});
  EXPECT_NE(o.err.find("timed out after 1s"), std::string::npos) << o.err;
  EXPECT_FALSE(state_dir_exists(slow_id));
}

}  // namespace
}  // namespace vireo::container::testing
