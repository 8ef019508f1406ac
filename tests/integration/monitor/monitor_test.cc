// vireo-monitor with the real vireo-runtime: logs, exit records, attach, tty, rotation, failure
// reporting, surviving its parent, and its resident size. Every wait is on an event (the ready
// fd, a pidfd, the attach socket) or a poll of a file with a deadline.
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "runtime_fixture.h"

extern char** environ;

namespace vireo::container::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr auto kTimeout = std::chrono::seconds(20);

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Polls cond every 10 ms until it holds or the deadline passes (for files, which give no event).
bool eventually(const std::function<bool()>& cond, std::chrono::seconds limit = kTimeout) {
  auto deadline = Clock::now() + limit;
  while (!cond()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// A process that is not our child: waited for through a pidfd.
bool wait_pidfd(int pidfd, int timeout_ms = 20000) {
  pollfd p{pidfd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

bool process_alive(pid_t pid) {
  return ::kill(pid, 0) == 0;
}

std::vector<Json> log_entries(const fs::path& file) {
  std::vector<Json> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) out.push_back(Json::parse(line));
  return out;
}

std::string joined_log(const fs::path& file, const std::string& stream) {
  std::string out;
  for (const auto& e : log_entries(file))
    if (e["stream"] == stream) out += e["log"].get<std::string>();
  return out;
}

// One attach connection speaking the framed protocol of src/monitor/attach.h.
class AttachClient {
 public:
  explicit AttachClient(const fs::path& sock) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string path = sock.string();
    // The test's state directories are deep: reach a long path through a directory fd, as a
    // client of a monitor with a long --state-dir has to.
    if (path.size() >= sizeof addr.sun_path) {
      dir_ = ::open(sock.parent_path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
      path = "/proc/self/fd/" + std::to_string(dir_) + "/" + sock.filename().string();
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~AttachClient() {
    ::close(fd_);
    if (dir_ >= 0) ::close(dir_);
  }
  bool connected() const { return connected_; }

  void send(uint8_t type, std::string_view payload) {
    std::string f(1, static_cast<char>(type));
    uint32_t n = static_cast<uint32_t>(payload.size());
    for (int shift : {24, 16, 8, 0}) f += static_cast<char>(n >> shift);
    f += payload;
    ASSERT_EQ(::write(fd_, f.data(), f.size()), static_cast<ssize_t>(f.size()));
  }
  void send_stdin(std::string_view s) { send(0, s); }
  void resize(uint16_t rows, uint16_t cols) {
    char p[4] = {static_cast<char>(rows >> 8), static_cast<char>(rows),
                 static_cast<char>(cols >> 8), static_cast<char>(cols)};
    send(4, std::string_view(p, 4));
  }
  void close_stdin() { send(5, ""); }

  // Reads frames until output (types 1 and 2) contains needle, or the exit frame came.
  bool read_until(const std::string& needle) {
    auto deadline = Clock::now() + kTimeout;
    // Searched from where the needle could start in what is new, so that reading stays linear.
    size_t from = 0;
    while (output_.find(needle, from) == std::string::npos) {
      from = output_.size() >= needle.size() ? output_.size() - needle.size() + 1 : 0;
      int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      if (left <= 0 || closed_) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, left) != 1) return false;
      static char buf[256 * 1024];
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) {
        closed_ = true;
        return output_.find(needle) != std::string::npos;
      }
      raw_.append(buf, static_cast<size_t>(n));
      parse();
    }
    return true;
  }
  // Reads until the monitor sends the exit frame and closes.
  bool read_exit() {
    read_until("\x01never\x01");
    return !exit_json_.empty();
  }
  const std::string& output() const { return output_; }
  const std::string& exit_json() const { return exit_json_; }

 private:
  void parse() {
    while (raw_.size() >= 5) {
      uint32_t n = 0;
      for (int i = 1; i <= 4; ++i) n = n << 8 | static_cast<unsigned char>(raw_[i]);
      if (raw_.size() < 5 + n) return;
      uint8_t type = static_cast<uint8_t>(raw_[0]);
      std::string payload = raw_.substr(5, n);
      if (type == 1 || type == 2) output_ += payload;
      if (type == 3) exit_json_ = payload;
      raw_.erase(0, 5 + n);
    }
  }

  int fd_ = -1;
  int dir_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string raw_, output_, exit_json_;
};

// A network namespace pinned under /run/netns by `ip netns add`, with lo up; deleted with the
// object (also when the test fails).
class NamedNetns {
 public:
  static std::string ip() {
    for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
      if (::access(p, X_OK) == 0) return p;
    return "ip";
  }

  explicit NamedNetns(const fs::path& dir) : dir_(dir) {
    static int count = 0;
    name_ = "vireo-mt-" + std::to_string(::getpid()) + "-" + std::to_string(++count);
    ok_ = spawn({ip(), "netns", "add", name_}, dir_, 20).exit_code == 0 &&
          spawn({ip(), "-n", name_, "link", "set", "lo", "up"}, dir_, 20).exit_code == 0;
  }
  ~NamedNetns() { spawn({ip(), "netns", "del", name_}, dir_, 20); }
  bool ok() const { return ok_; }
  std::string path() const { return "/run/netns/" + name_; }

 private:
  fs::path dir_;
  std::string name_;
  bool ok_ = false;
};

// config with the container joining the network namespace at path.
Json in_netns(Json c, const std::string& path) {
  for (auto& ns : c["linux"]["namespaces"])
    if (ns["type"] == "network") ns["path"] = path;
  return c;
}

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}

// A TCP socket listening on 127.0.0.1 with a port of its own.
int listen_loopback(uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(0);
  socklen_t len = sizeof a;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::listen(fd, 1), 0);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

uint16_t unused_port() {
  uint16_t port = 0;
  ::close(listen_loopback(&port));
  return port;
}

// Connects to 127.0.0.1:port and reads until end of file (bounded); "" when refused or reset.
std::string read_reply(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a = loopback(port);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    char buf[256];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    if (n < 0) out.clear();
  }
  ::close(fd);
  return out;
}

struct Monitor {
  std::string id;
  fs::path state;
  std::string ready;  // the line read from the ready fd
  pid_t pid = -1;     // the monitor's pid (from monitor.pid)
  int pidfd = -1;
  pid_t container_pid = -1;
  bool ready_eof = false;  // the ready fd reached end of file after the line
};

class MonitorTest : public RuntimeTest {
 public:
  static void SetUpTestSuite() {
    RuntimeTest::SetUpTestSuite();
    for (const char* applet : {"stty", "nc"})
      if (!fs::exists(rootfs_ / "bin" / applet))
        fs::create_symlink("busybox", rootfs_ / "bin" / applet);
    const char* bin = ::getenv("VIREO_BIN_DIR");
    monitor_bin_ = std::string(bin ? bin : "build/bin") + "/vireo-monitor";
  }

 protected:
  void TearDown() override {
    for (pid_t g : parent_groups_) {
      if (::kill(-g, SIGKILL) == 0) ::waitpid(g, nullptr, 0);
    }
    for (auto& m : monitors_) {
      if (m.pidfd < 0) continue;
      if (process_alive(m.pid)) ::kill(m.pid, SIGKILL);
      wait_pidfd(m.pidfd, 5000);
      ::close(m.pidfd);
    }
    RuntimeTest::TearDown();
  }

  std::vector<std::string> monitor_argv(const Monitor& m, const fs::path& bundle_dir,
                                        const std::vector<std::string>& extra, int ready_fd) {
    std::vector<std::string> argv = {monitor_bin_,
                                     "--id",
                                     m.id,
                                     "--bundle",
                                     bundle_dir.string(),
                                     "--runtime",
                                     runtime_bin_,
                                     "--runtime-root",
                                     (root_ / "state").string(),
                                     "--state-dir",
                                     m.state.string(),
                                     "--ready-fd",
                                     std::to_string(ready_fd)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  // Starts a monitor for config (or for bundle_override when given) and waits for its ready
  // line. With parent_pgid, the monitor is started by a `sh` in a process group of its own that
  // stays alive (a stand-in for vireod), and *parent_pgid receives that group.
  Monitor& start(const Json& config, const std::vector<std::string>& extra = {},
                 const fs::path& bundle_override = {}, pid_t* parent_pgid = nullptr,
                 const std::function<void(const fs::path&)>& prepare_state = {}) {
    Monitor& m = monitors_.emplace_back();
    m.id = reuse_id_.empty() ? new_id() : std::exchange(reuse_id_, "");
    m.state = root_ / ("monitor-" + std::to_string(monitors_.size()) + "-" + m.id);
    fs::create_directories(m.state);
    if (prepare_state) prepare_state(m.state);
    fs::path dir = bundle_override.empty() ? bundle(config, m.id) : bundle_override;
    int p[2];
    EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
    int ready_w = ::fcntl(p[1], F_DUPFD, 100);  // inherited: no O_CLOEXEC
    ::close(p[1]);
    std::vector<std::string> argv = monitor_argv(m, dir, extra, ready_w);
    if (parent_pgid) {
      std::string cmd;
      for (const auto& a : argv) cmd += "'" + a + "' ";
      argv = {"/bin/sh", "-c", cmd + "; exec sleep 60"};
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, (m.state / "spawn.err").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    if (parent_pgid) {
      posix_spawnattr_setpgroup(&attr, 0);
      posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    pid_t child = -1;
    EXPECT_EQ(::posix_spawn(&child, args[0], &fa, &attr, args.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    ::close(ready_w);
    if (parent_pgid) {
      *parent_pgid = child;
      parent_groups_.push_back(child);
    } else {
      int status = 0;  // the monitor detaches: the process we started exits at once
      EXPECT_EQ(::waitpid(child, &status, 0), child);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    }
    pollfd pfd{p[0], POLLIN, 0};
    EXPECT_EQ(::poll(&pfd, 1, 20000), 1) << "no ready line";
    char buf[4096];
    ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n > 0) m.ready.assign(buf, static_cast<size_t>(n));
    // The monitor closes the ready fd after its line and no other process holds it.
    // (The stand-in parent shell keeps its copy of the fd, so only without one.)
    pfd = {p[0], POLLIN, 0};
    m.ready_eof = !parent_pgid && ::poll(&pfd, 1, 20000) == 1 && ::read(p[0], buf, sizeof buf) == 0;
    ::close(p[0]);
    m.pid = std::atoi(slurp(m.state / "monitor.pid").c_str());
    if (m.pid > 0) m.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, m.pid, 0));
    Json ready = Json::parse(m.ready, nullptr, false);
    if (ready.is_object() && ready.contains("pid")) m.container_pid = ready["pid"].get<pid_t>();
    return m;
  }

  // Waits for the monitor to exit and returns exit.json.
  Json wait_exit(Monitor& m) {
    EXPECT_TRUE(wait_pidfd(m.pidfd)) << "monitor did not exit";
    std::string text = slurp(m.state / "exit.json");
    EXPECT_FALSE(text.empty()) << "no exit.json";
    return Json::parse(text, nullptr, false);
  }

  void expect_cleaned_up(const Monitor& m) {
    EXPECT_FALSE(state_dir_exists(m.id)) << "runtime state left behind";
    EXPECT_FALSE(fs::exists(m.state / "attach.sock"));
    EXPECT_FALSE(process_alive(m.pid) &&
                 slurp("/proc/" + std::to_string(m.pid) + "/stat").find(") Z ") ==
                     std::string::npos)
        << "monitor still running";
  }

  static std::string monitor_bin_;
  std::deque<Monitor> monitors_;
  std::vector<pid_t> parent_groups_;  // stand-in parents still to kill
  std::string reuse_id_;              // the ID for the next start() instead of a new one
};

std::string MonitorTest::monitor_bin_;

TEST_F(MonitorTest, KeepsNoInheritedFdAndGivesNoneToTheContainer) {
  // A pipe the caller left inheritable: the monitor must not keep its write end open.
  int leak[2];
  ASSERT_EQ(::pipe(leak), 0);
  ::fcntl(leak[0], F_SETFD, FD_CLOEXEC);
  // A stale record from an earlier run in the same state directory.
  Monitor& m = start(config({"sleep", "60"}), {}, {}, nullptr, [](const fs::path& state) {
    std::ofstream(state / "exit.json") << R"({"exit_code":1})";
  });
  ::close(leak[1]);
  ASSERT_GT(m.container_pid, 0) << m.ready;
  pollfd p{leak[0], POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 20000), 1);
  char c;
  EXPECT_EQ(::read(leak[0], &c, 1), 0) << "the monitor or the container holds an inherited fd";
  ::close(leak[0]);
  EXPECT_FALSE(fs::exists(m.state / "exit.json")) << "stale exit.json kept";
  // The ready fd reached end of file too (start() read it to the end).
  EXPECT_TRUE(m.ready_eof);
  ASSERT_EQ(::kill(m.container_pid, SIGKILL), 0);
  EXPECT_EQ(wait_exit(m)["exit_code"], 137);
}

TEST_F(MonitorTest, LogsBothStreamsAndRecordsExitCode) {
  Monitor& m = start(config({"sh", "-c", "echo out; echo err >&2; echo 'q\"\\\\'; exit 3"}));
  ASSERT_GT(m.container_pid, 0) << m.ready;
  Json exit = wait_exit(m);
  EXPECT_EQ(exit["exit_code"], 3);
  EXPECT_TRUE(exit["signal"].is_null());
  EXPECT_EQ(exit["oom_killed"], false);
  EXPECT_TRUE(exit["started_at"].get<std::string>().ends_with("Z"));
  EXPECT_LE(exit["started_at"].get<std::string>(), exit["finished_at"].get<std::string>());
  EXPECT_EQ(joined_log(m.state / "ctr.log", "stdout"), "out\nq\"\\\\\n");
  EXPECT_EQ(joined_log(m.state / "ctr.log", "stderr"), "err\n");
  for (const auto& e : log_entries(m.state / "ctr.log")) EXPECT_TRUE(e.contains("time"));
  expect_cleaned_up(m);
}

TEST_F(MonitorTest, RecordsExitCodeZero) {
  Monitor& m = start(config({"true"}));
  ASSERT_GT(m.container_pid, 0) << m.ready;
  Json exit = wait_exit(m);
  EXPECT_EQ(exit["exit_code"], 0);
  EXPECT_TRUE(exit["signal"].is_null());
  expect_cleaned_up(m);
}

TEST_F(MonitorTest, RecordsSigkillFromOutsideAs137) {
  Monitor& m = start(config({"sleep", "60"}));
  ASSERT_GT(m.container_pid, 0) << m.ready;
  ASSERT_EQ(::kill(m.container_pid, SIGKILL), 0);
  Json exit = wait_exit(m);
  EXPECT_EQ(exit["exit_code"], 137);
  EXPECT_EQ(exit["signal"], 9);
  expect_cleaned_up(m);
}

TEST_F(MonitorTest, ForwardsSigtermToTheContainer) {
  Monitor& m = start(config({"sh", "-c",
                             "trap 'echo got TERM; exit 42' TERM; echo armed; "
                             "while true; do sleep 0.05; done"}));
  ASSERT_GT(m.container_pid, 0) << m.ready;
  ASSERT_TRUE(
      eventually([&] { return slurp(m.state / "ctr.log").find("armed") != std::string::npos; }));
  ASSERT_EQ(::kill(m.pid, SIGTERM), 0);
  Json exit = wait_exit(m);
  EXPECT_EQ(exit["exit_code"], 42);
  EXPECT_EQ(joined_log(m.state / "ctr.log", "stdout"), "armed\ngot TERM\n");
}

TEST_F(MonitorTest, RecordsAnOomKill) {
  Json c = config({"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"});
  c["linux"]["resources"]["memory"] = {{"limit", 16 * 1024 * 1024}};
  Monitor& m = start(c);
  ASSERT_GT(m.container_pid, 0) << m.ready;
  Json exit = wait_exit(m);
  EXPECT_EQ(exit["exit_code"], 137);
  EXPECT_EQ(exit["signal"], 9);
  EXPECT_EQ(exit["oom_killed"], true);
  expect_cleaned_up(m);
}

TEST_F(MonitorTest, ContainerClosingItsStdinDoesNotMakeTheMonitorSpin) {
  Monitor& m =
      start(config({"sh", "-c", "exec 0<&-; echo closed; sleep 0.3; echo still here; sleep 60"}),
            {"--stdin"});
  ASSERT_GT(m.container_pid, 0) << m.ready;
  AttachClient a(m.state / "attach.sock");
  ASSERT_TRUE(a.read_until("closed\n"));
  ASSERT_TRUE(a.read_until("still here\n"));
  // A closed pipe stays "ready" for epoll: the monitor must drop it, not spin on it.
  std::string stat = slurp("/proc/" + std::to_string(m.pid) + "/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long cpu_ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i)
    if (i == 14 || i == 15) cpu_ticks += std::stol(field);  // utime, stime
  EXPECT_LT(cpu_ticks, 10) << "the monitor used CPU while the container slept";
  ASSERT_EQ(::kill(m.container_pid, SIGKILL), 0);
  EXPECT_EQ(wait_exit(m)["exit_code"], 137);
}

TEST_F(MonitorTest, SurvivesItsParentBeingKilledAndKeepsLogging) {
  pid_t parent_group = -1;
  Monitor& m = start(config({"sh", "-c",
                             "i=0; while true; do i=$((i+1)); echo tick $i; "
                             "sleep 0.02; done"}),
                     {}, {}, &parent_group);
  ASSERT_GT(m.container_pid, 0) << m.ready;
  EXPECT_EQ(::getsid(m.pid), m.pid) << "the monitor leads its own session";
  // The parent's whole process group is killed, as a service manager would kill vireod.
  ASSERT_EQ(::kill(-parent_group, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(parent_group, &status, 0), parent_group);
  parent_groups_.clear();
  size_t before = log_entries(m.state / "ctr.log").size();
  ASSERT_TRUE(eventually([&] { return log_entries(m.state / "ctr.log").size() > before + 5; }));
  EXPECT_TRUE(process_alive(m.pid));
  EXPECT_TRUE(process_alive(m.container_pid));
  ASSERT_EQ(::kill(m.container_pid, SIGKILL), 0);
  EXPECT_EQ(wait_exit(m)["exit_code"], 137);
  expect_cleaned_up(m);
}

TEST_F(MonitorTest, TwoAttachClientsSeeOutputAndShareStdin) {
  Monitor& m = start(config({"cat"}), {"--stdin"});
  ASSERT_GT(m.container_pid, 0) << m.ready;
  AttachClient a(m.state / "attach.sock"), b(m.state / "attach.sock");
  ASSERT_TRUE(a.connected() && b.connected());
  a.send_stdin("from a\n");
  ASSERT_TRUE(a.read_until("from a\n"));
  ASSERT_TRUE(b.read_until("from a\n"));
  b.send_stdin("from b\n");
  ASSERT_TRUE(a.read_until("from b\n"));
  a.close_stdin();  // cat reads end of file and exits 0
  ASSERT_TRUE(a.read_exit());
  ASSERT_TRUE(b.read_exit());
  EXPECT_EQ(Json::parse(b.exit_json())["exit_code"], 0);
  EXPECT_EQ(wait_exit(m)["exit_code"], 0);
  EXPECT_EQ(joined_log(m.state / "ctr.log", "stdout"), "from a\nfrom b\n");
  expect_cleaned_up(m);
}

TEST_F(MonitorTest, SlowAttachClientHoldsBackNeitherTheContainerNorOtherClients) {
  // About 1.3 MB of output: far more than a socket buffer and the per-client queue together.
  Monitor& m = start(config({"sh", "-c", "read go; seq 1 200000"}), {"--stdin"});
  ASSERT_GT(m.container_pid, 0) << m.ready;
  AttachClient slow(m.state / "attach.sock"), fast(m.state / "attach.sock");
  ASSERT_TRUE(slow.connected() && fast.connected());
  fast.send_stdin("go\n");
  // The slow client reads nothing until the container is done.
  ASSERT_TRUE(fast.read_until("\n199999\n200000\n"));
  EXPECT_EQ(wait_exit(m)["exit_code"], 0);
  EXPECT_TRUE(slow.read_exit() == false) << "the slow client should have been dropped";
  EXPECT_LT(slow.output().size(), fast.output().size());
  std::string logged = joined_log(m.state / "ctr.log", "stdout");
  EXPECT_TRUE(logged.ends_with("\n199999\n200000\n"));
}

TEST_F(MonitorTest, StdinIsNullWithoutTheStdinOption) {
  Monitor& m = start(config({"cat"}));
  ASSERT_GT(m.container_pid, 0) << m.ready;
  EXPECT_EQ(wait_exit(m)["exit_code"], 0);  // cat reads /dev/null's end of file
}

TEST_F(MonitorTest, TtyRelaysThePtyAndResizes) {
  Json c = config({"sh", "-c", "echo ready; read line; stty size; echo \"got $line\""});
  c["process"]["terminal"] = true;
  Monitor& m = start(c, {"--tty"});
  ASSERT_GT(m.container_pid, 0) << m.ready;
  AttachClient a(m.state / "attach.sock");
  ASSERT_TRUE(a.connected());
  ASSERT_TRUE(
      eventually([&] { return slurp(m.state / "ctr.log").find("ready") != std::string::npos; }));
  a.resize(37, 123);
  a.send_stdin("hi\n");
  ASSERT_TRUE(a.read_until("got hi")) << a.output();
  EXPECT_NE(a.output().find("37 123\r\n"), std::string::npos) << a.output();
  EXPECT_EQ(wait_exit(m)["exit_code"], 0);
  std::string logged = joined_log(m.state / "ctr.log", "stdout");
  EXPECT_NE(logged.find("37 123"), std::string::npos) << logged;
  expect_cleaned_up(m);
}

TEST_F(MonitorTest, RotatesLogsBySize) {
  Monitor& m =
      start(config({"seq", "1", "300"}), {"--log-max-size", "2000", "--log-max-files", "3"});
  ASSERT_GT(m.container_pid, 0) << m.ready;
  EXPECT_EQ(wait_exit(m)["exit_code"], 0);
  for (const char* f : {"ctr.log", "ctr.log.1", "ctr.log.2"}) {
    ASSERT_TRUE(fs::exists(m.state / f)) << f;
    EXPECT_LE(fs::file_size(m.state / f), 2000u) << f;
  }
  EXPECT_FALSE(fs::exists(m.state / "ctr.log.3"));
  std::string all = joined_log(m.state / "ctr.log.2", "stdout") +
                    joined_log(m.state / "ctr.log.1", "stdout") +
                    joined_log(m.state / "ctr.log", "stdout");
  EXPECT_TRUE(all.ends_with("\n299\n300\n"));
  EXPECT_FALSE(all.starts_with("1\n"));  // the oldest file was dropped
}

TEST_F(MonitorTest, CreateFailureIsReportedOnTheReadyFdAndLeavesNothing) {
  fs::path bad = root_ / "bad-bundle";  // no config.json
  fs::create_directories(bad);
  Monitor& m = start(Json(), {}, bad);
  Json ready = Json::parse(m.ready, nullptr, false);
  ASSERT_TRUE(ready.is_object()) << m.ready;
  ASSERT_TRUE(ready.contains("error")) << m.ready;
  EXPECT_TRUE(ready["error"].get<std::string>().starts_with("create: ")) << m.ready;
  EXPECT_EQ(m.ready.find('\n'), m.ready.size() - 1) << "one line";
  ASSERT_GE(m.pidfd, 0);
  EXPECT_TRUE(wait_pidfd(m.pidfd)) << "monitor still running";
  EXPECT_FALSE(state_dir_exists(m.id));
  EXPECT_FALSE(fs::exists(m.state / "exit.json"));
  EXPECT_FALSE(fs::exists(m.state / "attach.sock"));
}

TEST_F(MonitorTest, MissingExecutableIsReportedAndCleanedUp) {
  Monitor& m = start(config({"/no/such/binary"}));
  Json ready = Json::parse(m.ready, nullptr, false);
  ASSERT_TRUE(ready.is_object() && ready.contains("error")) << m.ready;
  EXPECT_TRUE(wait_pidfd(m.pidfd));
  EXPECT_FALSE(state_dir_exists(m.id));
  EXPECT_FALSE(any_cgroup_exists(m.id));
}

TEST_F(MonitorTest, RefusesAnIdTheRuntimeHasWithoutTouchingThatContainer) {
  Monitor& first = start(config({"sleep", "60"}));
  ASSERT_GT(first.container_pid, 0) << first.ready;
  reuse_id_ = first.id;
  Monitor& second = start(config({"true"}));
  Json ready = Json::parse(second.ready, nullptr, false);
  ASSERT_TRUE(ready.is_object() && ready.contains("error")) << second.ready;
  EXPECT_TRUE(wait_pidfd(second.pidfd));
  EXPECT_TRUE(process_alive(first.container_pid)) << "the other container was deleted";
  EXPECT_TRUE(state_dir_exists(first.id));
  ASSERT_EQ(::kill(first.container_pid, SIGKILL), 0);
  EXPECT_EQ(wait_exit(first)["exit_code"], 137);
}

TEST_F(MonitorTest, KilledMonitorIsDetectableByItsPidAndMissingExitJson) {
  Monitor& m = start(config({"sleep", "60"}));
  ASSERT_GT(m.container_pid, 0) << m.ready;
  ASSERT_EQ(::kill(m.pid, SIGKILL), 0);
  // What a caller does: a pidfd of monitor.pid's process becomes readable, and no exit.json.
  EXPECT_TRUE(wait_pidfd(m.pidfd));
  EXPECT_FALSE(fs::exists(m.state / "exit.json"));
  // The container itself is not the monitor's to stop once the monitor is gone.
  EXPECT_TRUE(process_alive(m.container_pid));
}

TEST_F(MonitorTest, RunningMonitorStaysUnderOneMebibyteResident) {
#ifdef VIREO_SANITIZE_BUILD
  GTEST_SKIP() << "sanitizer builds link the monitor dynamically with the sanitizer runtime";
#endif
  // A burst of output (about 600 KB) to two attach clients first, then steady output: what the
  // burst needed must have been given back. Published ports (a TCP and a UDP listener) add
  // nothing that stays resident.
  Monitor& m =
      start(config({"sh", "-c",
                    "read go; seq 1 100000; echo burst done; "
                    "while true; do echo line; sleep 0.01; done"}),
            {"--stdin", "--netns", "/proc/self/ns/net", "--publish",
             "tcp:127.0.0.1:" + std::to_string(unused_port()) + ":127.0.0.1:8000", "--publish",
             "udp:127.0.0.1:" + std::to_string(unused_port()) + ":127.0.0.1:8000"});
  ASSERT_GT(m.container_pid, 0) << m.ready;
  AttachClient a(m.state / "attach.sock"), b(m.state / "attach.sock");
  a.send_stdin("go\n");
  ASSERT_TRUE(a.read_until("burst done\nline\nline\n"));
  ASSERT_TRUE(b.read_until("burst done\nline\nline\n"));
  std::string status = slurp("/proc/" + std::to_string(m.pid) + "/status");
  size_t at = status.find("VmRSS:");
  ASSERT_NE(at, std::string::npos);
  long rss_kib = std::strtol(status.c_str() + at + 6, nullptr, 10);
  RecordProperty("monitor_rss_kib", static_cast<int>(rss_kib));
  auto field = [&](const char* name) {
    size_t f = status.find(name);
    return f == std::string::npos
               ? 0L
               : std::strtol(status.c_str() + f + std::strlen(name), nullptr, 10);
  };
  std::printf("vireo-monitor VmRSS: %ld KiB (anonymous %ld, file %ld)\n", rss_kib,
              field("RssAnon:"), field("RssFile:"));
  EXPECT_LT(rss_kib, 1024);
  ASSERT_EQ(::kill(m.container_pid, SIGKILL), 0);
  EXPECT_EQ(wait_exit(m)["exit_code"], 137);
}

TEST_F(MonitorTest, PublishedTcpPortReachesTheContainerAndOutlivesTheParent) {
  NamedNetns ns(root_);
  ASSERT_TRUE(ns.ok()) << "ip netns add failed";
  uint16_t port = unused_port();
  // nc serves one connection (it becomes `echo hi`), then the container exits.
  Json c = in_netns(config({"nc", "-l", "-p", "8000", "-e", "echo", "hi"}), ns.path());
  pid_t parent_group = -1;
  Monitor& m = start(c,
                     {"--netns", ns.path(), "--publish",
                      "tcp:127.0.0.1:" + std::to_string(port) + ":127.0.0.1:8000"},
                     {}, &parent_group);
  ASSERT_GT(m.container_pid, 0) << m.ready;
  // Published ports stay up without vireod (the stand-in parent here).
  ASSERT_EQ(::kill(-parent_group, SIGKILL), 0);
  ASSERT_EQ(::waitpid(parent_group, nullptr, 0), parent_group);
  parent_groups_.clear();
  // Until nc listens, the proxy's connection to it is refused and the client is reset.
  std::string reply;
  EXPECT_TRUE(eventually([&] { return (reply = read_reply(port)) == "hi\n"; })) << reply;
  EXPECT_EQ(wait_exit(m)["exit_code"], 0);
  EXPECT_EQ(read_reply(port), "") << "the port is still served after the container exited";
  // The host port can be bound again (SO_REUSEADDR, as the proxy binds: the proxied connection
  // may leave a TIME_WAIT behind).
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = loopback(port);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  EXPECT_EQ(::listen(fd, 1), 0) << std::strerror(errno);
  ::close(fd);
  expect_cleaned_up(m);
}

TEST_F(MonitorTest, PublishedPortTakenOnTheHostFailsTheStartAndLeavesNothing) {
  NamedNetns ns(root_);
  ASSERT_TRUE(ns.ok()) << "ip netns add failed";
  uint16_t port = 0;
  int taken = listen_loopback(&port);
  Monitor& m = start(in_netns(config({"sleep", "60"}), ns.path()),
                     {"--netns", ns.path(), "--publish",
                      "tcp:127.0.0.1:" + std::to_string(port) + ":127.0.0.1:8000"});
  ::close(taken);
  Json ready = Json::parse(m.ready, nullptr, false);
  ASSERT_TRUE(ready.is_object() && ready.contains("error")) << m.ready;
  EXPECT_EQ(ready["error"],
            "port " + std::to_string(port) + "/tcp on 127.0.0.1 is already in use on the host");
  EXPECT_EQ(m.ready.find('\n'), m.ready.size() - 1) << "one line";
  ASSERT_GE(m.pidfd, 0);
  EXPECT_TRUE(wait_pidfd(m.pidfd)) << "monitor still running";
  EXPECT_FALSE(state_dir_exists(m.id));
  EXPECT_FALSE(any_cgroup_exists(m.id));
  EXPECT_FALSE(fs::exists(m.state / "exit.json"));
  EXPECT_FALSE(fs::exists(m.state / "attach.sock"));
}

}  // namespace
}  // namespace vireo::container::testing
