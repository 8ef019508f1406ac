// Root only: real containers through the vireo-monitor and vireo-runtime binaries on a busybox
// image (a rootfs tar of /bin/busybox imported into an ImageStore).
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <condition_variable>
#include <fstream>
#include <mutex>

#include "base/file.h"
#include "base/subprocess.h"
#include "containers/engine.h"
#include "containers/engine_impl.h"
#include "image/image_store.h"

namespace vireo::containers {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (overlayfs, namespaces)";
    if (!fs::exists("/bin/busybox")) GTEST_SKIP() << "busybox-static not installed";
    const char* bin = std::getenv("VIREO_BIN_DIR");
    fs::path bindir = bin ? bin : "build/bin";
    runtime_ = (bindir / "vireo-runtime").string();
    monitor_ = (bindir / "vireo-monitor").string();
    if (!fs::exists(runtime_) || !fs::exists(monitor_)) GTEST_SKIP() << "binaries not built";
    char tmpl[] = "/tmp/vireo-ct-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    fs::path rootfs = tmp_ / "src";
    fs::create_directories(rootfs / "bin");
    fs::create_directories(rootfs / "etc");
    fs::copy_file("/bin/busybox", rootfs / "bin/busybox");
    for (const char* tool : {"sh", "sleep", "echo", "cat", "true", "false"})
      fs::create_symlink("busybox", rootfs / "bin" / tool);
    ASSERT_TRUE(write_file_atomic(rootfs / "etc/passwd", "root:x:0:0::/root:/bin/sh\n"));
    auto tar = run_process({"tar", "-C", rootfs.string(), "-cf", (tmp_ / "bb.tar").string(), "."},
                           {.timeout = 60s});
    ASSERT_TRUE(tar && tar->ok());
    auto s = image::ImageStore::create(tmp_ / "images", {.privileged = true});
    ASSERT_TRUE(s) << s.error().message();
    store_ = std::move(*s);
    ASSERT_TRUE(store_->import_rootfs_tar(tmp_ / "bb.tar", "busybox:1"));
    fs::create_directories(tmp_ / "ctl");
    open_engine();
  }

  void TearDown() override {
    if (engine_) {
      for (const auto& c : engine_->list(true)) (void)engine_->remove(c.id, true);
      engine_.reset();
    }
    if (!tmp_.empty()) {
      EXPECT_EQ(mounts_under(tmp_ / "state"), 0) << "mounts left behind";
      fs::remove_all(tmp_);
    }
  }

  void open_engine() {
    auto e = Engine::open({.state_dir = tmp_ / "state",
                           .images = store_.get(),
                           .runtime = runtime_,
                           .monitor = monitor_,
                           .on_event = [this](const std::string& action, const Container& c) {
                             std::lock_guard lock(mu_);
                             events_.push_back(action + " " + c.name);
                             if (action == "container-died" && c.name == "dead") died_.push_back(c);
                             cv_.notify_all();
                           }});
    ASSERT_TRUE(e) << e.error().message();
    engine_ = std::move(*e);
  }

  // Waits (bounded) until event "action name" happened count times.
  bool await_event(const std::string& event, int count, std::chrono::milliseconds timeout = 20s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout,
                        [&] { return std::count(events_.begin(), events_.end(), event) >= count; });
  }
  int event_count(const std::string& event) {
    std::lock_guard lock(mu_);
    return static_cast<int>(std::count(events_.begin(), events_.end(), event));
  }

  static int mounts_under(const fs::path& dir) {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    int n = 0;
    while (std::getline(in, line))
      if (line.find(" " + dir.string() + "/") != std::string::npos) ++n;
    return n;
  }

  Result<Container> run(Json body) {
    body["start"] = true;
    return engine_->create(TRY(parse_create_request(body)));
  }

  // The state dir holds only the runtime's folder and the containers in keep.
  std::vector<std::string> state_entries() {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(tmp_ / "state"))
      out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  fs::path tmp_;
  std::string runtime_, monitor_;
  std::unique_ptr<image::ImageStore> store_;
  std::unique_ptr<Engine> engine_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
  std::vector<Container> died_;
};

std::vector<std::string> texts(const LogPage& p) {
  std::vector<std::string> out;
  for (const auto& l : p.lines) out.push_back(l.stream + ":" + l.log);
  return out;
}

TEST_F(EngineTest, CreateStartLogsAndExitCode) {
  auto c = engine_->create(
      parse_create_request({{"image", "busybox:1"},
                            {"name", "hello"},
                            {"command", {"sh", "-c", "echo out; echo err >&2; exit 3"}}})
          .value());
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->state, State::kCreated);
  EXPECT_EQ(c->id.size(), 64u);
  EXPECT_TRUE(c->image_digest.starts_with("sha256:"));
  EXPECT_FALSE(c->exit_code);
  auto started = engine_->start("hello");
  ASSERT_TRUE(started) << started.error().message();
  auto exited = engine_->wait("hello", 20s);
  ASSERT_TRUE(exited) << exited.error().message();
  EXPECT_EQ(exited->exit_code, 3);
  EXPECT_NE(exited->finished_at, "");
  auto got = engine_->get(c->id.substr(0, 12));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->state, State::kExited);
  EXPECT_EQ(got->exit_code, 3);
  auto logs = engine_->logs("hello", {});
  ASSERT_TRUE(logs) << logs.error().message();
  auto lines = texts(*logs);
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"stderr:err\n", "stdout:out\n"}));
  EXPECT_TRUE(await_event("container-died hello", 1));
  EXPECT_EQ(engine_->list(false).size(), 0u);
  EXPECT_EQ(engine_->list(true).size(), 1u);

  // Started again: the same container, a new run.
  auto again = engine_->start("hello");
  ASSERT_TRUE(again) << again.error().message();
  ASSERT_TRUE(engine_->wait("hello", 20s));
  EXPECT_TRUE(engine_->remove("hello", false));
  EXPECT_FALSE(engine_->get("hello"));
  EXPECT_EQ(state_entries(), std::vector<std::string>{"runtime"});
}

TEST_F(EngineTest, CreateStartExitOfTrueIsTimed) {
  auto t0 = std::chrono::steady_clock::now();
  auto c = run({{"image", "busybox:1"}, {"command", {"true"}}});
  ASSERT_TRUE(c) << c.error().message();
  auto exited = engine_->wait(c->id, 20s);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  ASSERT_TRUE(exited);
  EXPECT_EQ(exited->exit_code, 0);
  std::printf("create+start+exit of true: %lld ms\n", static_cast<long long>(ms));
}

TEST_F(EngineTest, FollowGetsNewLinesThenTheExit) {
  std::ofstream(tmp_ / "ctl" / "go").close();
  fs::remove(tmp_ / "ctl" / "go");
  auto c =
      run({{"image", "busybox:1"},
           {"name", "talker"},
           {"mounts", {{{"source", (tmp_ / "ctl").string()}, {"target", "/ctl"}}}},
           {"command",
            {"sh", "-c", "echo first; while [ ! -e /ctl/go ]; do sleep 0.05; done; echo second"}}});
  ASSERT_TRUE(c) << c.error().message();
  std::mutex m;
  std::condition_variable cv;
  std::optional<std::pair<LogPage, bool>> got;
  auto follow = [&](std::string cursor) {
    got.reset();
    engine_->follow_logs("talker", {.cursor = cursor}, 20s, [&](Result<LogPage> p, bool running) {
      std::lock_guard lock(m);
      ASSERT_TRUE(p) << p.error().message();
      got.emplace(std::move(*p), running);
      cv.notify_all();
    });
    std::unique_lock lock(m);
    return cv.wait_for(lock, 25s, [&] { return got.has_value(); });
  };
  ASSERT_TRUE(follow(""));
  EXPECT_EQ(texts(got->first), std::vector<std::string>{"stdout:first\n"});
  std::string cursor = got->first.cursor;
  std::ofstream(tmp_ / "ctl" / "go").close();
  ASSERT_TRUE(follow(cursor));
  EXPECT_EQ(texts(got->first), std::vector<std::string>{"stdout:second\n"});
  auto w = engine_->wait("talker", 20s);
  ASSERT_TRUE(w) << w.error().message();
  ASSERT_TRUE(follow(got->first.cursor));
  EXPECT_TRUE(got->first.lines.empty());
  EXPECT_FALSE(got->second);
}

TEST_F(EngineTest, StopKillsAProcessThatIgnoresSigtermAfterTheTimeout) {
  auto c = run({{"image", "busybox:1"},
                {"name", "stubborn"},
                {"command", {"sh", "-c", "trap '' TERM; while :; do sleep 1; done"}}});
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->state, State::kRunning);
  EXPECT_GT(c->pid, 0);
  EXPECT_EQ(engine_->list(false).size(), 1u);
  auto t0 = std::chrono::steady_clock::now();
  auto stopped = engine_->stop("stubborn", 1s);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(stopped) << stopped.error().message();
  EXPECT_EQ(stopped->state, State::kExited);
  EXPECT_EQ(stopped->exit_code, 137);
  EXPECT_GE(took, 1s);
  EXPECT_LT(took, 10s);
  EXPECT_TRUE(await_event("container-stopped stubborn", 1));
  auto k = engine_->kill("stubborn", SIGKILL);
  ASSERT_FALSE(k);
  EXPECT_EQ(k.error().code(), ErrorCode::kConflict);
}

TEST_F(EngineTest, StopOfACooperativeContainerIsQuickAndRemoveNeedsForce) {
  auto c = run({{"image", "busybox:1"}, {"name", "calm"}, {"command", {"sleep", "1000"}}});
  ASSERT_TRUE(c) << c.error().message();
  auto rm = engine_->remove("calm", false);
  ASSERT_FALSE(rm);
  EXPECT_EQ(rm.error().code(), ErrorCode::kConflict);
  EXPECT_EQ(rm.error().message(), "container calm is running: stop it first or use --force");
  auto killed = engine_->kill("calm", SIGTERM);  // sleep as init: only SIGKILL ends it
  ASSERT_TRUE(killed);
  ASSERT_TRUE(engine_->remove("calm", true));
  EXPECT_FALSE(engine_->get("calm"));
  EXPECT_TRUE(await_event("container-deleted calm", 1));
  EXPECT_EQ(state_entries(), std::vector<std::string>{"runtime"});
}

TEST_F(EngineTest, MemoryLimitKillsAndReportsOom) {
  auto c = run({{"image", "busybox:1"},
                {"name", "hog"},
                {"memory", 16 << 20},
                {"command", {"busybox", "tail", "/dev/zero"}}});  // init itself grows
  ASSERT_TRUE(c) << c.error().message();
  auto exited = engine_->wait("hog", 30s);
  ASSERT_TRUE(exited) << exited.error().message();
  EXPECT_EQ(exited->exit_code, 137);
  EXPECT_TRUE(exited->oom_killed);
  EXPECT_TRUE(await_event("container-oom hog", 1));
}

TEST_F(EngineTest, OnFailureRestartsTwiceThenStaysExited) {
  auto c = run({{"image", "busybox:1"},
                {"name", "flaky"},
                {"command", {"sh", "-c", "exit 1"}},
                {"restart", {{"policy", "on-failure"}, {"max_retries", 2}}}});
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_TRUE(await_event("container-died flaky", 3));
  EXPECT_EQ(event_count("container-restarted flaky"), 2);
  auto got = engine_->get("flaky");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->state, State::kExited);
  EXPECT_EQ(got->restart_count, 2);
  EXPECT_EQ(got->exit_code, 1);
}

TEST_F(EngineTest, AlwaysRestartsUntilAnExplicitStop) {
  auto c = run({{"image", "busybox:1"},
                {"name", "phoenix"},
                {"command", {"true"}},
                {"restart", {{"policy", "always"}}}});
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_TRUE(await_event("container-restarted phoenix", 2));
  auto stopped = engine_->stop("phoenix", 5s);
  ASSERT_TRUE(stopped) << stopped.error().message();
  EXPECT_EQ(stopped->state, State::kExited);
  int restarts = event_count("container-restarted phoenix");
  // No restart follows: the back-off is at most 800 ms here.
  EXPECT_FALSE(await_event("container-restarted phoenix", restarts + 1, 1500ms));
  auto got = engine_->get("phoenix");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->state, State::kExited);
  EXPECT_GE(got->restart_count, 2);
}

TEST_F(EngineTest, AutoRemoveRemovesAfterTheExitIsReported) {
  auto c = run({{"image", "busybox:1"},
                {"name", "ephemeral"},
                {"auto_remove", true},
                {"command", {"sh", "-c", "exit 4"}}});
  ASSERT_TRUE(c) << c.error().message();
  auto exited = engine_->wait(c->id, 20s);
  ASSERT_TRUE(exited) << exited.error().message();
  EXPECT_EQ(exited->exit_code, 4);
  ASSERT_TRUE(await_event("container-deleted ephemeral", 1));
  EXPECT_FALSE(engine_->get("ephemeral"));
  EXPECT_EQ(state_entries(), std::vector<std::string>{"runtime"});
  auto late = engine_->wait(c->id, 1s);  // a late waiter still gets the exit by id
  ASSERT_TRUE(late);
  EXPECT_EQ(late->exit_code, 4);
}

TEST_F(EngineTest, ReopenedEngineAdoptsRunningContainersAndSeesExitsThatHappenedMeanwhile) {
  Json body = {
      {"image", "busybox:1"},
      {"mounts", {{{"source", (tmp_ / "ctl").string()}, {"target", "/ctl"}}}},
      {"command", {"sh", "-c", "while [ ! -e /ctl/$HOSTNAME ]; do sleep 0.05; done; exit 7"}}};
  body["name"] = "a";
  auto a = run(body);
  ASSERT_TRUE(a) << a.error().message();
  body["name"] = "b";
  auto b = run(body);
  ASSERT_TRUE(b) << b.error().message();
  engine_.reset();  // vireod goes away; the monitors stay

  open_engine();
  auto got = engine_->get("a");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->state, State::kRunning);
  EXPECT_EQ(got->pid, a->pid);
  std::ofstream(tmp_ / "ctl" / "a").close();
  auto exited = engine_->wait("a", 20s);
  ASSERT_TRUE(exited) << exited.error().message();
  EXPECT_EQ(exited->exit_code, 7);

  // b exits while no engine is open.
  auto mpid = read_file(tmp_ / "state" / b->id / "monitor" / "monitor.pid");
  ASSERT_TRUE(mpid);
  Fd pidfd(pidfd_open(std::stoi(*mpid)));
  ASSERT_TRUE(pidfd);
  engine_.reset();
  std::ofstream(tmp_ / "ctl" / "b").close();
  pollfd p{pidfd.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 20000), 1);
  open_engine();
  auto seen = engine_->get("b");
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->state, State::kExited);
  EXPECT_EQ(seen->exit_code, 7);
}

TEST_F(EngineTest, ReopenAppliesRestartPoliciesToDeadMonitorsAndStoppedContainers) {
  auto run_sleeper = [&](const char* name, const char* policy) {
    auto c = run({{"image", "busybox:1"},
                  {"name", name},
                  {"command", {"sleep", "1000"}},
                  {"restart", {{"policy", policy}}}});
    EXPECT_TRUE(c) << c.error().message();
    return c ? *c : Container{};
  };
  Container dead = run_sleeper("dead", "always");
  Container always = run_sleeper("always", "always");
  Container unless = run_sleeper("unless", "unless-stopped");
  ASSERT_TRUE(engine_->stop("always", 0s));
  ASSERT_TRUE(engine_->stop("unless", 0s));
  engine_.reset();

  // The monitor of "dead" dies without recording an exit (as after a host reboot).
  auto mpid = read_file(tmp_ / "state" / dead.id / "monitor" / "monitor.pid");
  ASSERT_TRUE(mpid);
  Fd pidfd(pidfd_open(std::stoi(*mpid)));
  ASSERT_TRUE(pidfd);
  ASSERT_EQ(pidfd_signal(pidfd.get(), SIGKILL), 0);
  pollfd p{pidfd.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 20000), 1);

  open_engine();
  ASSERT_TRUE(await_event("container-died dead", 1));
  {
    std::lock_guard lock(mu_);
    ASSERT_EQ(died_.size(), 1u);
    EXPECT_EQ(died_[0].exit_code, 255);
    EXPECT_NE(died_[0].error, "");
  }
  ASSERT_TRUE(await_event("container-restarted dead", 1));
  ASSERT_TRUE(await_event("container-restarted always", 1));  // always: even after a stop
  auto d = engine_->get("dead");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->state, State::kRunning);
  EXPECT_EQ(d->restart_count, 1);
  EXPECT_NE(d->pid, dead.pid);
  auto u = engine_->get("unless");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->state, State::kExited);  // unless-stopped: the stop holds
  EXPECT_EQ(engine_->get("always")->state, State::kRunning);
  EXPECT_NE(engine_->get("always")->pid, always.pid);
  EXPECT_EQ(unless.restart_count, 0);
}

TEST_F(EngineTest, BadInputLeavesNothingBehind) {
  auto first = engine_->create(
      parse_create_request({{"image", "busybox:1"}, {"name", "taken"}, {"command", {"true"}}})
          .value());
  ASSERT_TRUE(first) << first.error().message();
  auto expect = [&](const Json& body, ErrorCode code) {
    auto req = parse_create_request(body);
    ASSERT_TRUE(req) << body.dump();
    auto c = engine_->create(*req);
    ASSERT_FALSE(c) << body.dump();
    EXPECT_EQ(c.error().code(), code) << c.error().message();
  };
  expect({{"image", "nosuch:1"}, {"command", {"true"}}}, ErrorCode::kNotFound);
  expect({{"image", "busybox:1"}, {"name", "taken"}, {"command", {"true"}}},
         ErrorCode::kAlreadyExists);
  expect({{"image", "busybox:1"},
          {"command", {"true"}},
          {"mounts", {{{"source", "/no/such/dir"}, {"target", "/x"}}}}},
         ErrorCode::kNotFound);
  expect({{"image", "busybox:1"}, {"command", {"true"}}, {"user", "nobody"}},
         ErrorCode::kInvalidArgument);
  auto unknown = engine_->create(parse_create_request({{"image", "nosuch:1"}}).value());
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message(), "image nosuch:1 not found");
  CreateRequest bad_name;
  bad_name.image = "busybox:1";
  bad_name.name = "-x";
  EXPECT_FALSE(engine_->create(bad_name));
  // A failing start leaves the container created.
  auto noexec = run({{"image", "busybox:1"}, {"name", "noexec"}, {"command", {"/no/such"}}});
  ASSERT_FALSE(noexec);
  auto left = engine_->get("noexec");
  ASSERT_TRUE(left);
  EXPECT_EQ(left->state, State::kCreated);
  ASSERT_TRUE(engine_->remove("noexec", false));
  auto noexec_rm = run({{"image", "busybox:1"},
                        {"name", "noexec-rm"},
                        {"auto_remove", true},
                        {"command", {"/no/such"}}});
  ASSERT_FALSE(noexec_rm);
  EXPECT_EQ(noexec_rm.error().code(), ErrorCode::kConflict);
  EXPECT_NE(noexec_rm.error().message().find("/no/such"), std::string::npos);
  EXPECT_FALSE(engine_->get("noexec-rm"));  // --rm: not kept

  EXPECT_EQ(engine_->list(true).size(), 1u);
  EXPECT_EQ(state_entries(), (std::vector<std::string>{first->id, "runtime"}));
  EXPECT_EQ(mounts_under(tmp_ / "state"), 1);
}

}  // namespace
}  // namespace vireo::containers
