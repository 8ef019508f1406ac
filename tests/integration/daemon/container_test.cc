// Containers through vireod and the CLI (`vireo ct`), as a Docker user drives them: a busybox
// image imported from /bin/busybox; run in the foreground (output on the right streams, the
// exit status passed on, --rm), detached (ps, logs, stop with a process that ignores SIGTERM,
// exec, start again, rm refused while running, rm -f), settings (env, workdir, user, read-only
// root, bind mounts), containers that keep running while vireod is kill -9ed and are found again by
// the next vireod, and bad input refused with one line and nothing left.
#include <gtest/gtest.h>
#include <unistd.h>
#include <fstream>

#include "base/json.h"
#include "cli_expect.h"
#include "daemon_process.h"

namespace vireo::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class ContainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "containers need root";
    ASSERT_TRUE(d.start()) << "vireod did not start";
    ASSERT_EQ(import_busybox(d, {"sh", "echo", "cat", "id", "pwd", "sleep", "touch", "ls", "env"}),
              "");
  }
  void TearDown() override {
    if (::geteuid() != 0) return;
    // Containers outlive vireod by design: remove them before the daemon goes.
    for (const auto& c : json({"ct", "ps", "-a"})) d.cli({"ct", "rm", "-f", c.value("name", "")});
  }

  Json json(std::vector<std::string> args) const { return cli_json(d, std::move(args)); }
  Json inspect(const std::string& name) const { return json({"ct", "inspect", name}); }
  std::vector<std::string> names(bool all) const {
    std::vector<std::string> out;
    std::vector<std::string> args = {"ct", "ps"};
    if (all) args.push_back("-a");
    for (const auto& c : json(args)) out.push_back(c.value("name", ""));
    return out;
  }

  DaemonProcess d;
};

TEST_F(ContainerTest, ForegroundRunStreamsOutputAndPassesTheExitStatus) {
  auto r = d.cli({"ct", "run", "--rm", "busybox:1", "sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_TRUE(names(true).empty());  // --rm

  r = d.cli({"ct", "run", "--name", "kept", "busybox:1", "echo", "-n", "flags", "--after"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "flags --after");
  Json kept = inspect("kept");
  EXPECT_EQ(kept.value("state", ""), "exited");
  EXPECT_EQ(kept.value("exit_code", -1), 0);
  EXPECT_FALSE(kept.value("finished_at", "").empty());
  EXPECT_EQ(d.cli({"ct", "logs", "kept"}).out, "flags --after");
}

TEST_F(ContainerTest, SettingsReachTheProcess) {
  fs::path shared = d.dir() / "shared";
  fs::create_directories(shared);
  std::ofstream(shared / "in.txt") << "from host";
  auto r =
      d.cli({"ct", "run", "--rm", "-e", "GREETING=hello", "-w", "/tmp", "-u", "1000:1000", "-v",
             shared.string() + ":/data:ro", "--read-only", "busybox:1", "sh", "-c",
             "echo $GREETING $(pwd) $(id -u):$(id -g) $(cat /data/in.txt); "
             "touch /data/x 2>/dev/null || echo ro-bind; touch /x 2>/dev/null || echo ro-root"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hello /tmp 1000:1000 from host\nro-bind\nro-root\n");

  // no-new-privileges: on by default, off on request; other security options refused.
  auto nnp = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"ct", "run", "--rm", "--net", "none"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"busybox:1", "cat", "/proc/self/status"});
    auto s = d.cli(args);
    EXPECT_EQ(s.exit_code, 0) << s.err;
    auto at = s.out.find("NoNewPrivs:");
    return at == std::string::npos ? std::string("?") : s.out.substr(at + 12, 1);
  };
  EXPECT_EQ(nnp({}), "1");
  EXPECT_EQ(nnp({"--security-opt", "no-new-privileges=false"}), "0");
  expect_refused(d, {"ct", "run", "--security-opt", "seccomp=unconfined", "busybox:1", "true"},
                 "only no-new-privileges");
}

TEST_F(ContainerTest, DetachedContainerLifecycle) {
  auto r = d.cli({"ct", "run", "-d", "--name", "web", "--memory", "64M", "busybox:1", "sh", "-c",
                  "echo started; exec sleep 1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "web\n");
  EXPECT_EQ(names(false), std::vector<std::string>{"web"});
  Json web = inspect("web");
  EXPECT_EQ(web.value("state", ""), "running");
  EXPECT_GT(web.value("pid", 0), 0);
  EXPECT_EQ(d.cli({"ct", "logs", "web"}).out, "started\n");
  EXPECT_EQ(d.cli({"ct", "logs", "--tail", "0", "web"}).out, "");

  // exec: output on its streams, the exit status passed on, env/workdir/user applied.
  r = d.cli({"ct", "exec", "-e", "X=1", "-w", "/tmp", "-u", "1000", "web", "sh", "-c",
             "echo $X $(pwd) $(id -u); echo oops >&2; exit 4"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(r.out, "1 /tmp 1000\n");
  EXPECT_EQ(r.err, "oops\n");
  auto usage = d.cli({"ct", "exec", "web"});
  EXPECT_EQ(usage.exit_code, 2) << usage.err;  // a usage error, as for every command
  EXPECT_NE(usage.err.find("usage: vireo ct exec NAME CMD"), std::string::npos) << usage.err;
  expect_refused(d, {"ct", "exec", "nosuch", "true"}, "nosuch");

  Json top = json({"ct", "top", "web"});
  ASSERT_EQ(top.size(), 1u) << top.dump();
  EXPECT_EQ(top[0].value("command", ""), "sleep 1000");
  EXPECT_EQ(top[0].value("pid", 0), web.value("pid", -1));

  Json stats = json({"ct", "stats", "web"});
  ASSERT_EQ(stats.size(), 1u) << stats.dump();
  EXPECT_GT(stats[0].value("memory", uint64_t{0}), 0u) << stats.dump();
  EXPECT_EQ(stats[0].value("pids", uint64_t{0}), 1u) << stats.dump();
  EXPECT_EQ(stats[0].value("memory_limit", uint64_t{0}), 64u << 20) << stats.dump();
  EXPECT_GE(stats[0].value("cpu_percent", -1.0), 0.0) << stats.dump();
  // Streaming: a sample a second until the container stops.
  ASSERT_EQ(
      d.cli({"ct", "run", "-d", "--name", "brief", "--net", "none", "busybox:1", "sleep", "3"})
          .exit_code,
      0);
  auto streamed = d.cli({"ct", "stats", "--stream", "brief"});
  EXPECT_EQ(streamed.exit_code, 0) << streamed.err;
  size_t samples = 0;
  for (size_t at = 0; (at = streamed.out.find("\nbrief ", at)) != std::string::npos; ++at)
    ++samples;
  EXPECT_GE(samples, 1u) << streamed.out;
  EXPECT_LE(samples, 4u) << streamed.out;
  // The stream ends once the container stops running; its exit is recorded a moment later.
  ASSERT_EQ(d.cli({"ct", "wait", "brief"}).exit_code, 0);
  ASSERT_EQ(d.cli({"ct", "rm", "brief"}).exit_code, 0);
  // update: new limits for the running container, kept in its configuration.
  ASSERT_EQ(d.cli({"ct", "update", "--memory", "128M", "--pids-limit", "50", "web"}).exit_code, 0);
  EXPECT_EQ(json({"ct", "stats", "web"})[0].value("memory_limit", uint64_t{0}), 128u << 20);
  EXPECT_EQ(inspect("web")["config"].value("pids_limit", 0), 50);
  expect_refused(d, {"ct", "update", "--memory", "1M", "web"}, "minimum");
  expect_refused(d, {"ct", "update", "web"}, "nothing to update");

  expect_refused(d, {"ct", "rm", "web"}, "running");
  // sleep as PID 1 ignores SIGTERM: stop kills it after the timeout.
  r = d.cli({"ct", "stop", "-t", "1", "web"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  web = inspect("web");
  EXPECT_EQ(web.value("state", ""), "exited");
  EXPECT_EQ(web.value("exit_code", -1), 137);
  EXPECT_TRUE(names(false).empty());
  EXPECT_EQ(names(true), std::vector<std::string>{"web"});

  expect_refused(d, {"ct", "exec", "web", "true"}, "not running");
  ASSERT_EQ(d.cli({"ct", "start", "web"}).exit_code, 0);
  EXPECT_EQ(inspect("web").value("state", ""), "running");
  ASSERT_EQ(d.cli({"ct", "kill", "web"}).exit_code, 0);
  EXPECT_EQ(d.cli({"ct", "wait", "web"}).out, "137\n");
  ASSERT_EQ(d.cli({"ct", "create", "--name", "idle", "busybox:1", "true"}).exit_code, 0);
  Json pruned = json({"ct", "prune"});  // created and exited ones go, web (stopped) too
  EXPECT_EQ(pruned.value("removed", Json::array()).size(), 2u) << pruned.dump();
  EXPECT_TRUE(names(true).empty());
  expect_refused(d, {"ct", "create", "--name", "prune", "busybox:1", "true"}, "reserved");
}

// Log rotation as asked (--log-opt): the oldest output goes, the newest stays.
TEST_F(ContainerTest, LogsRotateAsAsked) {
  auto r = d.cli(
      {"ct", "run", "--name", "chatty", "--log-opt", "max-size=4k", "--log-opt", "max-file=2",
       "busybox:1", "sh", "-c",
       "i=0; while [ $i -lt 500 ]; do echo line-$i-padding-padding-padding; i=$((i+1)); done"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json config = inspect("chatty")["config"];
  EXPECT_EQ(config.value("log_max_size", 0), 4096);
  EXPECT_EQ(config.value("log_max_files", 0), 2);
  std::string logs = d.cli({"ct", "logs", "chatty"}).out;
  EXPECT_LT(logs.size(), 10000u);  // 2 files of ≤ 4 KiB of JSON lines
  EXPECT_EQ(logs.find("line-0-"), std::string::npos);
  EXPECT_NE(logs.find("line-499-padding"), std::string::npos) << logs;
  expect_refused(d, {"ct", "run", "--log-opt", "max-size=lots", "busybox:1"}, "max-size");
  expect_refused(d, {"ct", "run", "--log-opt", "driver=syslog", "busybox:1"}, "--log-opt");
}

// The monitor keeps a container running and logging while vireod is killed; the next vireod
// finds it running and sees its exit.
TEST_F(ContainerTest, ContainersOutliveVireod) {
  fs::path gate = d.dir() / "gate";
  fs::create_directories(gate);
  auto r = d.cli({"ct", "run", "-d", "--name", "survivor", "-v", gate.string() + ":/gate",
                  "busybox:1", "sh", "-c",
                  "echo before; while [ ! -e /gate/go ]; do sleep 0.05; done; echo after; exit 7"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  d.kill();
  std::ofstream(gate / "go") << "";
  ASSERT_TRUE(d.start()) << "vireod did not restart";
  EXPECT_EQ(d.cli({"ct", "wait", "survivor"}).out, "7\n");
  EXPECT_EQ(d.cli({"ct", "logs", "survivor"}).out, "before\nafter\n");
  EXPECT_EQ(inspect("survivor").value("exit_code", -1), 7);
}

TEST_F(ContainerTest, HealthChecksReportStatusAndEvents) {
  LifecycleRecorder unhealthy(d, "container-unhealthy");
  ASSERT_TRUE(unhealthy.ready());
  {
    LifecycleRecorder healthy(d, "container-healthy");
    ASSERT_TRUE(healthy.ready());
    auto r = d.cli({"ct", "run", "-d", "--name", "doc", "--net", "none", "--health-cmd",
                    "cat /tmp/ok", "--health-interval", "200ms", "--health-retries", "2",
                    "busybox:1", "sh", "-c", "echo fine > /tmp/ok; exec sleep 1000"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(healthy.events().back(), "container-healthy /1.0/containers/doc");
  }
  Json doc = inspect("doc");
  ASSERT_TRUE(doc["health"].is_object()) << doc.dump();
  EXPECT_EQ(doc["health"].value("status", ""), "healthy");
  ASSERT_FALSE(doc["health"]["log"].empty());
  EXPECT_EQ(doc["health"]["log"].back().value("exit_code", -1), 0);
  EXPECT_EQ(doc["health"]["log"].back().value("output", ""), "fine\n");
  EXPECT_EQ(doc["config"]["health"].value("interval_ms", 0), 200);

  // The check starts failing: two failures in a row make it unhealthy.
  ASSERT_EQ(d.cli({"ct", "exec", "doc", "busybox", "rm", "/tmp/ok"}).exit_code, 0);
  const auto& seen = unhealthy.events();
  EXPECT_EQ(seen.back(), "container-unhealthy /1.0/containers/doc");
  doc = inspect("doc");
  EXPECT_EQ(doc["health"].value("status", ""), "unhealthy");
  EXPECT_GE(doc["health"].value("failing_streak", 0), 2);
  EXPECT_NE(doc["health"]["log"].back().value("exit_code", 0), 0);
  EXPECT_LE(doc["health"]["log"].size(), 5u);
  auto ps = d.cli({"ct", "ps"});
  EXPECT_NE(ps.out.find("running (unhealthy)"), std::string::npos) << ps.out;

  expect_refused(
      d,
      {"ct", "run", "-d", "--health-cmd", "true", "--health-interval", "5x", "busybox:1", "true"},
      "--health-interval 5x");
  expect_refused(d, {"ct", "run", "-d", "--health-retries", "2", "busybox:1", "true"},
                 "need --health-cmd");
}

bool mounted(const fs::path& dir) {
  std::ifstream mounts("/proc/self/mounts");
  for (std::string line; std::getline(mounts, line);)
    if (line.find(" " + dir.string() + " ") != std::string::npos) return true;
  return false;
}

TEST_F(ContainerTest, NamedVolumesFromStoragePools) {
  for (const char* vol : {"default/data", "default/owned", "default/seed"})
    ASSERT_EQ(d.cli({"vol", "create", vol, "--size", "64M"}).exit_code, 0) << vol;
  const fs::path data_dir = d.root() / "containers" / "volumes" / "default" / "data";

  // A fresh volume gets a file system; what a container writes outlives the container.
  auto r = d.cli({"ct", "run", "--rm", "--net", "none", "-v", "data:/data", "busybox:1", "sh", "-c",
                  "echo kept > /data/f && ls -a /data"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, ".\n..\nf\n");  // empty at first: no lost+found
  EXPECT_FALSE(mounted(data_dir)) << "unmounted once no container uses it";
  r = d.cli({"ct", "run", "-d", "--name", "reader", "--net", "none", "-v", "default/data:/data:ro",
             "busybox:1", "sleep", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(mounted(data_dir));
  EXPECT_EQ(d.cli({"ct", "exec", "reader", "cat", "/data/f"}).out, "kept\n");
  EXPECT_NE(d.cli({"ct", "exec", "reader", "touch", "/data/g"}).exit_code, 0) << "read-only";
  expect_refused(d, {"vol", "rm", "default/data"}, "container reader");
  // A second user of the volume keeps it mounted when the first goes.
  r = d.cli({"ct", "run", "--rm", "--net", "none", "-v", "data:/d", "busybox:1", "cat", "/d/f"});
  EXPECT_EQ(r.out, "kept\n") << r.err;
  EXPECT_TRUE(mounted(data_dir));
  ASSERT_EQ(d.cli({"ct", "rm", "-f", "reader"}).exit_code, 0);
  EXPECT_FALSE(mounted(data_dir));

  // A non-root user can write to a fresh volume at a path the image does not have.
  r = d.cli({"ct", "run", "--rm", "--net", "none", "-u", "1000:1000", "-v", "owned:/work",
             "busybox:1", "sh", "-c", "touch /work/x && id -u && ls -ln /work"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("1000     1000"), std::string::npos) << r.out;
  // A fresh volume over a directory of the image starts with the image's content (as Docker).
  r = d.cli({"ct", "run", "--rm", "--net", "none", "-v", "seed:/bin", "busybox:1", "sh", "-c",
             "ls /bin/busybox"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "/bin/busybox\n");

  // Volumes that cannot be used: one line, nothing left.
  const size_t before = json({"ct", "ps", "-a"}).size();
  expect_refused(d, {"ct", "run", "-v", "nosuch:/x", "busybox:1", "true"}, "nosuch");
  expect_refused(d, {"ct", "run", "-v", "bad name:/x", "busybox:1", "true"}, "bad name");
  expect_refused(d, {"ct", "run", "-v", "data:relative", "busybox:1", "true"}, "absolute");
  EXPECT_EQ(json({"ct", "ps", "-a"}).size(), before);
  EXPECT_FALSE(mounted(data_dir));
}

// Thin and qcow2 volumes have no file of their own: they are mounted through nbdfuse over their
// NBD export, and the same data is what NBD clients (VMs) see.
TEST_F(ContainerTest, ThinAndQcow2VolumesMountThroughNbd) {
  const std::string pool_file = (d.dir() / "thin.pool").string();
  ASSERT_EQ(d.cli({"pool", "create", "fast", "--type", "thin", "--path", pool_file, "--size", "1G"})
                .exit_code,
            0);
  ASSERT_EQ(d.cli({"vol", "create", "fast/data", "--size", "128M"}).exit_code, 0);
  ASSERT_EQ(d.cli({"vol", "create", "default/q", "--size", "64M", "--format", "qcow2"}).exit_code,
            0);
  const fs::path volumes = d.root() / "containers" / "volumes";
  for (const char* vol : {"fast/data", "default/q"}) {
    auto r = d.cli({"ct", "run", "--rm", "--net", "none", "-v", std::string(vol) + ":/data",
                    "busybox:1", "sh", "-c", "echo kept > /data/f && ls -a /data"});
    EXPECT_EQ(r.exit_code, 0) << vol << ": " << r.err;
    EXPECT_EQ(r.out, ".\n..\nf\n") << vol;
    EXPECT_FALSE(mounted(volumes / vol)) << vol;
    EXPECT_FALSE(mounted(volumes / ".nbd" / vol)) << vol << ": nbdfuse is stopped with the mount";
    r = d.cli({"ct", "run", "--rm", "--net", "none", "-v", std::string(vol) + ":/d:ro", "busybox:1",
               "cat", "/d/f"});
    EXPECT_EQ(r.out, "kept\n") << vol << ": " << r.err;
  }
  // The thin pool holds the file system the container wrote: its volume is allocated, and a
  // snapshot of it (read-only) cannot be mounted, a clone can.
  Json vol = json({"vol", "show", "fast/data"});
  EXPECT_GT(vol.value("allocated", 0ull), 0ull);
  ASSERT_EQ(d.cli({"vol", "snapshot", "fast/data", "snap"}).exit_code, 0);
  expect_refused(d, {"ct", "run", "--rm", "-v", "fast/snap:/d", "busybox:1", "true"}, "clone");
  ASSERT_EQ(d.cli({"vol", "clone", "fast/snap", "copy"}).exit_code, 0);
  auto r = d.cli(
      {"ct", "run", "--rm", "--net", "none", "-v", "fast/copy:/d", "busybox:1", "cat", "/d/f"});
  EXPECT_EQ(r.out, "kept\n") << r.err;
  EXPECT_EQ(d.cli({"pool", "check", "fast"}).exit_code, 0);
}

TEST_F(ContainerTest, CopyBetweenContainerAndHost) {
  auto r =
      d.cli({"ct", "run", "-d", "--name", "box", "--net", "none", "busybox:1", "sleep", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // A host file the container must never reach through its own symlinks.
  const fs::path secret_dir = d.dir() / "secret";
  fs::create_directories(secret_dir);
  std::ofstream(secret_dir / "key") << "host only";
  r = d.cli({"ct", "exec", "box", "sh", "-c",
             "mkdir -p /srv/d && echo a > /srv/d/a && busybox ln -s " + secret_dir.string() +
                 " /srv/esc && busybox ln -s " + secret_dir.string() + " /srv/trap"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const fs::path out = d.dir() / "out";
  fs::create_directories(out);
  r = d.cli({"ct", "cp", "box:/srv/d", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_text(out / "d" / "a"), "a\n");
  r = d.cli({"ct", "cp", "box:/srv/d/a", (out / "renamed.txt").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_text(out / "renamed.txt"), "a\n");
  // The container's absolute symlink points into the container, not at the host's directory.
  expect_refused(d, {"ct", "cp", "box:/srv/esc/key", out.string()}, "no such file");
  EXPECT_FALSE(fs::exists(out / "key"));

  // Into the container: a file into a directory, a tree under a new name.
  std::ofstream(out / "in.txt") << "from host";
  ASSERT_EQ(d.cli({"ct", "cp", (out / "in.txt").string(), "box:/srv"}).exit_code, 0);
  EXPECT_EQ(d.cli({"ct", "exec", "box", "cat", "/srv/in.txt"}).out, "from host");
  ASSERT_EQ(d.cli({"ct", "cp", (out / "d").string(), "box:/srv/copy"}).exit_code, 0);
  EXPECT_EQ(d.cli({"ct", "exec", "box", "cat", "/srv/copy/a"}).out, "a\n");
  // Copying onto the planted symlink replaces the link; the host directory is untouched.
  ASSERT_EQ(d.cli({"ct", "cp", (out / "in.txt").string(), "box:/srv/trap"}).exit_code, 0);
  EXPECT_EQ(d.cli({"ct", "exec", "box", "cat", "/srv/trap"}).out, "from host");
  EXPECT_EQ(std::distance(fs::directory_iterator(secret_dir), fs::directory_iterator()), 1);

  // A stopped container can be copied from too.
  ASSERT_EQ(d.cli({"ct", "stop", "-t", "0", "box"}).exit_code, 0);
  r = d.cli({"ct", "cp", "box:/srv/in.txt", (out / "after-stop.txt").string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_text(out / "after-stop.txt"), "from host");

  expect_refused(d, {"ct", "cp", "box:/nope", out.string()}, "no such file");
  expect_refused(d, {"ct", "cp", "nosuch:/x", out.string()}, "nosuch");
  EXPECT_EQ(d.cli({"ct", "cp", out.string(), (out / "x").string()}).exit_code, 2) << "usage";
  expect_refused(d, {"ct", "cp", (out / "missing").string(), "box:/srv"}, "missing");
}

TEST_F(ContainerTest, BadInputIsRefusedWithOneLine) {
  expect_refused(d, {"ct", "run", "nosuch:1", "true"}, "nosuch");
  expect_refused(d, {"ct", "run", "--name", "bad name", "busybox:1"}, "bad name");
  expect_refused(d, {"ct", "run", "--restart", "sometimes", "busybox:1"}, "--restart");
  expect_refused(d, {"ct", "run", "-v", "data:/x", "busybox:1"}, "volume default/data");
  expect_refused(d, {"ct", "run", "-v", (d.dir() / "missing").string() + ":/x", "busybox:1"},
                 "missing");
  expect_refused(d, {"ct", "run", "--memory", "lots", "busybox:1"}, "--memory");
  expect_refused(d, {"ct", "rm", "nosuch"}, "nosuch");
  expect_refused(d, {"ct", "stop", "nosuch"}, "nosuch");
  ASSERT_EQ(d.cli({"ct", "create", "--name", "taken", "busybox:1", "true"}).exit_code, 0);
  expect_refused(d, {"ct", "create", "--name", "taken", "busybox:1", "true"}, "taken");
  EXPECT_EQ(names(true), std::vector<std::string>{"taken"});
  // A command that does not exist in the image: the start fails, the container stays created.
  auto r = d.cli({"ct", "run", "--name", "nocmd", "busybox:1", "/no/such/binary"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("/no/such/binary"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace vireo::testing
