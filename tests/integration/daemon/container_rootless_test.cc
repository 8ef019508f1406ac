// Rootless containers: vireod and the CLI run as an unprivileged user (a uid of the test's own,
// no passwd entry, through setpriv) on a state root and socket in that user's home and runtime
// directories, as `vireod --root ~/.local/share/vireo --socket $XDG_RUNTIME_DIR/vireo.sock`.
// A busybox image imported by the user; a foreground run is root in its user namespace and
// passes its exit status on; a detached container runs as the user's uid on the host, logs,
// exec, stop, rm; limits without a delegated cgroup, Vireo networks, published ports and a
// non-root user in the container are refused with one line and leave nothing behind.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/ranges.h>

#include "base/file.h"
#include "base/json.h"
#include "base/subprocess.h"
#include "daemon_process.h"

namespace vireo::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// The container processes of the test user, from /proc (Uid line of /proc/PID/status).
std::set<pid_t> processes_of(uid_t uid) {
  std::set<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (!std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    struct stat st {};
    if (::stat(e.path().c_str(), &st) != 0 || st.st_uid != uid) continue;
    // A zombie is gone already; its reaper (a subreaper above the test) collects it.
    auto stat = read_file(e.path() / "stat");
    if (stat && stat->find(") Z ") != std::string::npos) continue;
    out.insert(std::stoi(name));
  }
  return out;
}

// "Uid:\treal\teffective\tsaved\tfs" of a process, as four numbers joined by spaces.
std::string status_ids(pid_t pid, const std::string& key) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with(key + ":")) continue;
    std::istringstream words(line.substr(key.size() + 1));
    std::vector<std::string> ids;
    for (std::string w; words >> w;) ids.push_back(w);
    return fmt::format("{}", fmt::join(ids, " "));
  }
  return "";
}

class RootlessContainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the test makes an unprivileged identity: needs root";
    if (find_program("setpriv").empty()) GTEST_SKIP() << "setpriv (util-linux) is missing";
    auto max_userns = read_file("/proc/sys/user/max_user_namespaces");
    if (!max_userns || std::stoi(*max_userns) == 0)
      GTEST_SKIP() << "user namespaces are disabled (user.max_user_namespaces)";
    auto clone = read_file("/proc/sys/kernel/unprivileged_userns_clone");
    if (clone && std::stoi(*clone) == 0)
      GTEST_SKIP() << "unprivileged user namespaces are disabled";

    // A uid nobody else uses: no process and nothing in passwd.
    for (uid_ = 40000 + static_cast<uid_t>(::getpid() % 20000);; ++uid_)
      if (processes_of(uid_).empty() && ::getpwuid(uid_) == nullptr) break;

    char tmpl[] = "/tmp/vireo-rootless-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ::chmod(dir_.c_str(), 0755);
    // The binaries the user runs, where it may read them whatever the build tree's modes.
    fs::create_directories(dir_ / "bin");
    for (const char* b : {"vireod", "vireo", "vireo-runtime", "vireo-monitor"})
      fs::copy_file(fs::path(bin_dir()) / b, dir_ / "bin" / b);
    home_ = dir_ / "home";
    run_dir_ = dir_ / "run";
    for (const auto& d : {home_, run_dir_}) {
      fs::create_directories(d);
      ASSERT_EQ(::chown(d.c_str(), uid_, uid_), 0);
      ::chmod(d.c_str(), 0700);
    }
    state_ = home_ / ".local/share/vireo";
    socket_ = run_dir_ / "vireo.sock";
    ASSERT_TRUE(start_vireod()) << "vireod did not start as uid " << uid_ << ": " << vireod_log();

    // The image: a rootfs with busybox, made by root, imported by the user.
    fs::path rootfs = dir_ / "rootfs";
    fs::create_directories(rootfs / "bin");
    fs::create_directories(rootfs / "tmp");
    fs::copy_file("/bin/busybox", rootfs / "bin" / "busybox");
    for (const char* tool : {"sh", "echo", "cat", "id", "sleep", "ls", "wc"})
      fs::create_symlink("busybox", rootfs / "bin" / tool);
    std::string tar = (dir_ / "busybox.tar").string();
    auto r = run_process({"tar", "-C", rootfs.string(), "-cf", tar, "."});
    ASSERT_TRUE(r && r->ok()) << (r ? r->err : r.error().message());
    ::chmod(tar.c_str(), 0644);
    auto imported = cli({"image", "import", tar, "--tag", "busybox:1"});
    ASSERT_EQ(imported.exit_code, 0) << imported.err;
  }

  // Everything goes, also after a failure: the containers, vireod, any process of the user
  // (monitors, containers that outlive their removal), and the user's files.
  void TearDown() override {
    if (dir_.empty()) return;
    if (vireod_ > 0) {
      auto ps = cli({"--format", "json", "ct", "ps", "-a"});
      if (auto list = parse_json(ps.out); list && list->is_array())
        for (const auto& c : *list) cli({"ct", "rm", "-f", c.value("name", "")});
      ::kill(vireod_, SIGTERM);
      reap_vireod(10s);
    }
    for (int round = 0; round < 50; ++round) {
      auto left = processes_of(uid_);
      if (left.empty()) break;
      for (pid_t p : left) ::kill(p, SIGKILL);
      std::this_thread::sleep_for(20ms);  // the kernel takes them down asynchronously
    }
    EXPECT_TRUE(processes_of(uid_).empty()) << "processes of uid " << uid_ << " left";
    std::error_code ec;
    fs::remove_all(dir_, ec);
    EXPECT_FALSE(ec) << ec.message();
  }

  // argv run as the test user, with a minimal environment of its own.
  std::vector<std::string> as_user(const std::vector<std::string>& argv) const {
    std::vector<std::string> out = {"setpriv",
                                    fmt::format("--reuid={}", uid_),
                                    fmt::format("--regid={}", uid_),
                                    "--clear-groups",
                                    "env",
                                    "-i",
                                    "PATH=/usr/bin:/bin",
                                    "HOME=" + home_.string(),
                                    "XDG_RUNTIME_DIR=" + run_dir_.string()};
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
  }

  // `vireo ARGS` as the user.
  ProcessResult cli(std::vector<std::string> args) const {
    args.insert(args.begin(), {(dir_ / "bin" / "vireo").string(), "--socket", socket_.string()});
    auto r = run_process(as_user(args), {.timeout = 60s});
    return r ? *r : ProcessResult{.exit_code = -1, .err = r.error().message()};
  }
  Json cli_json(std::vector<std::string> args) const {
    args.insert(args.begin(), {"--format", "json"});
    auto r = cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? parse_json(r.out).value_or(Json()) : Json();
  }

  // Refused: exit status 1, nothing on stdout, one line on stderr that says says.
  void expect_refused(const std::vector<std::string>& args, const std::string& says) const {
    auto r = cli(args);
    std::string cmd = fmt::format("vireo {}", fmt::join(args, " "));
    EXPECT_EQ(r.exit_code, 1) << cmd << ": " << r.out << r.err;
    EXPECT_TRUE(r.out.empty()) << cmd << ": " << r.out;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << cmd << ": " << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << cmd << ": " << r.err;
  }

  // Container directories under the user's state root (64 hex digits each).
  std::vector<std::string> container_dirs() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(state_ / "containers", ec))
      if (e.path().filename().string().size() == 64) out.push_back(e.path().filename());
    return out;
  }

  std::string vireod_log() const { return read_file(dir_ / "vireod.log").value_or(""); }

  bool start_vireod() {
    auto argv = as_user({(dir_ / "bin" / "vireod").string(), "--root", state_.string(), "--socket",
                         socket_.string(), "--foreground", "--log-level", "info"});
    argv[0] = find_program("setpriv");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, (dir_ / "vireod.log").c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    int rc = ::posix_spawn(&vireod_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return false;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(vireod_, nullptr, WNOHANG) == vireod_) {
        vireod_ = -1;
        return false;
      }
      int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_.c_str());
      bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
      ::close(fd);
      if (up) return true;
      std::this_thread::sleep_for(10ms);  // the socket is the only readiness signal
    }
    return false;
  }

  void reap_vireod(std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(vireod_, nullptr, WNOHANG) == vireod_) {
        vireod_ = -1;
        return;
      }
      std::this_thread::sleep_for(10ms);
    }
    ::kill(vireod_, SIGKILL);
    ::waitpid(vireod_, nullptr, 0);
    vireod_ = -1;
  }

  uid_t uid_ = 0;
  fs::path dir_, home_, run_dir_, state_, socket_;
  pid_t vireod_ = -1;
};

TEST_F(RootlessContainerTest, VireodRunsAsTheUserOnItsOwnStateRoot) {
  EXPECT_EQ(status_ids(vireod_, "Uid"), fmt::format("{0} {0} {0} {0}", uid_));
  struct stat st {};
  ASSERT_EQ(::stat(state_.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, uid_);
  // The runtime's state is under the user's state root too.
  EXPECT_TRUE(fs::is_directory(state_ / "containers" / "runtime"));
}

TEST_F(RootlessContainerTest, ForegroundRunIsRootInItsUserNamespace) {
  auto r = cli({"ct", "run", "--rm", "busybox:1", "sh", "-c", "id -u; id -g; echo hi"});
  EXPECT_EQ(r.exit_code, 0) << r.err << vireod_log();
  EXPECT_EQ(r.out, "0\n0\nhi\n");

  r = cli({"ct", "run", "--rm", "busybox:1", "sh", "-c", "echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.err, "err\n");

  // Network none by default: a namespace of its own with loopback only.
  r = cli({"ct", "run", "--rm", "busybox:1", "cat", "/proc/net/dev"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("lo:"), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;  // two headers and lo

  EXPECT_EQ(cli_json({"ct", "ps", "-a"}), Json::array());
  EXPECT_TRUE(container_dirs().empty());
}

TEST_F(RootlessContainerTest, DetachedContainerRunsAsTheUsersUid) {
  auto r =
      cli({"ct", "run", "-d", "--name", "bg", "busybox:1", "sh", "-c", "echo up; exec sleep 1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err << vireod_log();
  EXPECT_EQ(r.out, "bg\n");
  Json bg = cli_json({"ct", "inspect", "bg"});
  EXPECT_EQ(bg.value("state", ""), "running");
  EXPECT_EQ(bg["config"].value("network", ""), "none");
  int pid = bg.value("pid", 0);
  ASSERT_GT(pid, 0) << bg.dump();
  // Root in the container is the user on the host.
  EXPECT_EQ(status_ids(pid, "Uid"), fmt::format("{0} {0} {0} {0}", uid_));
  EXPECT_EQ(status_ids(pid, "Gid"), fmt::format("{0} {0} {0} {0}", uid_));
  // One id mapped: the user's own, as root.
  std::istringstream map(read_file(fmt::format("/proc/{}/uid_map", pid)).value_or(""));
  uint64_t inside = 1, outside = 0, count = 0;
  map >> inside >> outside >> count;
  EXPECT_EQ(inside, 0u);
  EXPECT_EQ(outside, uid_);
  EXPECT_EQ(count, 1u);

  // The monitor runs as the user too.
  auto monitor_pid = read_file(state_ / "containers" / bg.value("id", "") / "monitor/monitor.pid");
  ASSERT_TRUE(monitor_pid);
  EXPECT_EQ(status_ids(std::stoi(*monitor_pid), "Uid"), fmt::format("{0} {0} {0} {0}", uid_));

  EXPECT_EQ(cli({"ct", "logs", "bg"}).out, "up\n");
  r = cli({"ct", "exec", "bg", "sh", "-c", "id -u; exit 4"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(r.out, "0\n");

  expect_refused({"ct", "update", "--memory", "128M", "bg"},
                 "need a cgroup v2 subtree delegated to uid");

  r = cli({"ct", "stop", "-t", "1", "bg"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  Json stopped = cli_json({"ct", "inspect", "bg"});
  EXPECT_EQ(stopped.value("state", ""), "exited");
  EXPECT_EQ(::kill(pid, 0), -1);
  r = cli({"ct", "rm", "bg"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(cli_json({"ct", "ps", "-a"}), Json::array());
  EXPECT_TRUE(container_dirs().empty());
}

TEST_F(RootlessContainerTest, WhatNeedsRootIsRefusedWithOneLine) {
  expect_refused({"ct", "run", "--rm", "--memory", "64M", "busybox:1", "true"},
                 "need a cgroup v2 subtree delegated to uid");
  expect_refused({"ct", "run", "-d", "--pids-limit", "10", "busybox:1", "true"},
                 "need a cgroup v2 subtree delegated to uid");
  expect_refused({"ct", "run", "--rm", "--net", "vireo0", "busybox:1", "true"},
                 "Vireo networks need vireod running as root");
  expect_refused({"ct", "run", "--rm", "-p", "8080:80", "busybox:1", "true"},
                 "publishing ports needs a Vireo network");
  expect_refused({"ct", "create", "-u", "1000", "busybox:1", "true"}, "maps only uid");
  EXPECT_EQ(cli_json({"ct", "ps", "-a"}), Json::array());
  EXPECT_TRUE(container_dirs().empty());
  // Network host is the user's own view of the host's network: allowed.
  auto r = cli({"ct", "run", "--rm", "--net", "host", "busybox:1", "echo", "host"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "host\n");
}

}  // namespace
}  // namespace vireo::testing
