// Runtime features that rest on newer kernel interfaces: the cgroup v2 eBPF device program and
// seccomp user notification handed to an agent over linux.seccomp.listenerPath.
#include <fcntl.h>
#include <poll.h>
#include <seccomp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "base/file.h"
#include "base/strings.h"
#include "container/device_filter.h"
#include "container/linux_sys.h"
#include "runtime_fixture.h"

namespace vireo::container::testing {
namespace {

namespace fs = std::filesystem;

std::string cgroup2_root() {
  if (fs::exists("/sys/fs/cgroup/cgroup.controllers")) return "/sys/fs/cgroup";
  return "/sys/fs/cgroup/unified";
}

// In a child moved into dir: 'y' or 'n' per path, whether open(O_WRONLY) succeeded.
std::string open_results_in_cgroup(const std::string& dir, const std::vector<std::string>& paths) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipefd[0]);
    std::string me = std::to_string(::getpid());
    int procs = ::open((dir + "/cgroup.procs").c_str(), O_WRONLY);
    if (procs < 0 || ::write(procs, me.data(), me.size()) < 0) ::_exit(2);
    std::string answers;
    for (const auto& p : paths) {
      int fd = ::open(p.c_str(), O_WRONLY);
      answers += fd >= 0 ? 'y' : 'n';
      if (fd >= 0) ::close(fd);
    }
    (void)!::write(pipefd[1], answers.data(), answers.size());
    ::_exit(0);
  }
  ::close(pipefd[1]);
  char buf[16] = {};
  ssize_t n = ::read(pipefd[0], buf, sizeof buf);
  ::close(pipefd[0]);
  ::waitpid(pid, nullptr, 0);
  return std::string(buf, n > 0 ? size_t(n) : 0);
}

// The program alone, on a cgroup v2 directory of the test's own: the rules decide, the last
// matching rule wins, and replacing the rules replaces the program.
TEST(DeviceFilterTest, CgroupV2ProgramAllowsAndDeniesByRule) {
  std::string dir = fmt::format("{}/vireo-devtest-{}", cgroup2_root(), ::getpid());
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0) << std::strerror(errno);
  std::vector<DeviceRule> rules = {
      {false, 'a', std::nullopt, std::nullopt, "rwm"},
      {true, 'c', 1, std::nullopt, "rw"},  // every mem device: null (1:3), zero (1:5), full (1:7)
      {false, 'c', 1, 7, "w"},             // ... but full is not writable
  };
  auto attached = attach_device_filter(dir, rules);
  ASSERT_TRUE(attached) << attached.error().message();
  EXPECT_EQ(open_results_in_cgroup(dir, {"/dev/null", "/dev/zero", "/dev/full", "/dev/tty"}),
            "yynn");

  attached = attach_device_filter(dir, {{true, 'a', std::nullopt, std::nullopt, "rwm"}});
  ASSERT_TRUE(attached) << attached.error().message();
  EXPECT_EQ(open_results_in_cgroup(dir, {"/dev/null", "/dev/full"}), "yy");
  EXPECT_EQ(::rmdir(dir.c_str()), 0) << std::strerror(errno);
}

TEST_F(RuntimeTest, DeviceRulesLimitAccessToCreatedDevices) {
  Json c = config({"/bin/sh", "-c",
                   ": < /dev/tun-r && echo read-ok; "
                   "(: > /dev/tun-r) 2>/dev/null || echo write-denied"});
  // The tun device: opening it needs no capability, and it is not among the defaults.
  c["linux"]["devices"] = {
      {{"path", "/dev/tun-r"}, {"type", "c"}, {"major", 10}, {"minor", 200}, {"fileMode", 0666}}};
  c["linux"]["resources"]["devices"].push_back(
      {{"allow", true}, {"type", "c"}, {"major", 10}, {"minor", 200}, {"access", "r"}});
  Output o = run(c);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "read-ok\nwrite-denied\n") << o.err;
}

TEST_F(RuntimeTest, TimeNamespaceOffsetsShiftTheContainersClocks) {
  Json c = config({"/bin/sh", "-c", "cut -d. -f1 /proc/uptime"});
  c["linux"]["namespaces"].push_back({{"type", "time"}});
  c["linux"]["timeOffsets"] = {{"boottime", {{"secs", 10 * 86400}, {"nanosecs", 0}}},
                               {"monotonic", {{"secs", 86400}, {"nanosecs", 0}}}};
  Output o = run(c);
  ASSERT_EQ(o.exit_code, 0) << o.err;
  long host_uptime = 0;
  ASSERT_EQ(std::sscanf(read_file("/proc/uptime")->c_str(), "%ld", &host_uptime), 1);
  long seen = std::stol(o.out);
  EXPECT_GE(seen, host_uptime + 10 * 86400 - 5) << o.out;
  EXPECT_LE(seen, host_uptime + 10 * 86400 + 5) << o.out;
}

// The first disk's "major:minor" (a throttle needs a real block device).
std::string some_block_device() {
  for (const auto& e : fs::directory_iterator("/sys/block")) {
    if (e.path().filename().string().starts_with("loop")) continue;
    if (auto dev = read_file(e.path() / "dev")) return std::string(trim(*dev));
  }
  return "";
}

TEST_F(RuntimeTest, BlockIoThrottleIsAppliedToTheContainersCgroup) {
  std::string dev = some_block_device();
  if (dev.empty()) GTEST_SKIP() << "no block device";
  auto colon = dev.find(':');
  int64_t major = std::stol(dev.substr(0, colon)), minor = std::stol(dev.substr(colon + 1));
  bool v2 = fs::exists("/sys/fs/cgroup/cgroup.controllers");
  Json c = config({"/bin/cat", v2 ? "/sys/fs/cgroup/io.max"
                                  : "/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device"});
  c["linux"]["resources"]["blockIO"] = {
      {"throttleReadBpsDevice", {{{"major", major}, {"minor", minor}, {"rate", 1048576}}}}};
  Output o = run(c);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.out.find(v2 ? dev + " rbps=1048576" : dev + " 1048576"), std::string::npos) << o.out;
}

// A seccomp agent: accepts one connection on path, takes the listener fd and the container
// process state, and answers every notification with EXDEV.
class SeccompAgent {
 public:
  explicit SeccompAgent(const fs::path& path) : path_(path) {
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listen_fd_, 1), 0);
    EXPECT_EQ(::pipe2(stop_, O_CLOEXEC), 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~SeccompAgent() {
    (void)!::write(stop_[1], "x", 1);
    thread_.join();
    ::close(listen_fd_);
    ::close(stop_[0]);
    ::close(stop_[1]);
    fs::remove(path_);
  }
  Json process_state() {
    std::lock_guard lock(mutex_);
    return state_;
  }
  int answered() const { return answered_; }

 private:
  bool wait_readable(int fd) {
    pollfd p[2] = {{fd, POLLIN, 0}, {stop_[0], POLLIN, 0}};
    return ::poll(p, 2, 20000) > 0 && !(p[1].revents & POLLIN);
  }
  void serve() {
    if (!wait_readable(listen_fd_)) return;
    Fd conn(::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC));
    char buf[65536];
    auto got = sys::recv_with_fd(conn.get(), buf, sizeof buf);
    if (!got || !got->second) return;
    {
      std::lock_guard lock(mutex_);
      state_ = Json::parse(std::string(buf, got->first), nullptr, false);
    }
    int listener = got->second.get();
    while (wait_readable(listener)) {
      seccomp_notif* req = nullptr;
      seccomp_notif_resp* resp = nullptr;
      if (seccomp_notify_alloc(&req, &resp) != 0) return;
      if (seccomp_notify_receive(listener, req) == 0) {
        resp->id = req->id;
        resp->error = -EXDEV;
        resp->val = 0;
        resp->flags = 0;
        if (seccomp_notify_respond(listener, resp) == 0) ++answered_;
      }
      seccomp_notify_free(req, resp);
    }
  }

  fs::path path_;
  int listen_fd_ = -1;
  int stop_[2] = {-1, -1};
  std::thread thread_;
  std::mutex mutex_;
  Json state_;
  std::atomic<int> answered_{0};
};

TEST_F(RuntimeTest, SeccompNotifyHandsTheListenerToTheAgent) {
  SeccompAgent agent(root_ / "agent.sock");
  Json c = config({"/bin/sh", "-c", "mkdir /tmp/x 2>&1; echo $?"});
  c["linux"]["seccomp"] = {
      {"defaultAction", "SCMP_ACT_ALLOW"},
      {"listenerPath", (root_ / "agent.sock").string()},
      {"listenerMetadata", "vireo-test"},
      {"syscalls", {{{"names", {"mkdir", "mkdirat"}}, {"action", "SCMP_ACT_NOTIFY"}}}}};
  Output o = run(c);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "mkdir: can't create directory '/tmp/x': Invalid cross-device link\n1\n");
  EXPECT_GE(agent.answered(), 1);
  Json st = agent.process_state();
  EXPECT_EQ(st.value("fds", Json()), Json::array({"seccompFd"})) << st.dump();
  EXPECT_EQ(st.value("metadata", ""), "vireo-test");
  EXPECT_GT(st.value("pid", 0), 0);
  EXPECT_EQ(st["state"].value("status", ""), "creating");
}

TEST_F(RuntimeTest, SeccompNotifyWithoutAnAgentFailsCreateAndLeavesNothing) {
  Json c = config({"/bin/true"});
  c["linux"]["seccomp"] = {{"defaultAction", "SCMP_ACT_ALLOW"},
                           {"listenerPath", (root_ / "nobody-listens.sock").string()},
                           {"syscalls", {{{"names", {"mkdir"}}, {"action", "SCMP_ACT_NOTIFY"}}}}};
  std::string id = new_id();
  Output o = runtime({"create", "--bundle", bundle(c, id).string(), id});
  EXPECT_NE(o.exit_code, 0);
  EXPECT_NE(o.err.find("listenerPath"), std::string::npos) << o.err;
  EXPECT_FALSE(state_dir_exists(id));
  EXPECT_FALSE(any_cgroup_exists(id));
}

}  // namespace
}  // namespace vireo::container::testing
