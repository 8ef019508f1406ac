// Attaching to containers through vireod and the CLI (root), as a Docker user does: `vireo ct
// run -i` with piped input (output and exit status back), `vireo ct run -it` under a
// pseudo-terminal (a terminal inside, typed input reaching sh, resizes reaching the container),
// `vireo ct attach` to a detached -d -i -t container with Ctrl-P Ctrl-Q detaching, and refusals:
// -t without a terminal, attach to a container that does not run. `vireo ct exec -i [-t]` into a
// running container the same ways.
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "base/fd.h"
#include "base/json.h"
#include "cli_expect.h"
#include "daemon_process.h"

namespace vireo::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The CLI on a pseudo-terminal of its own (forkpty), driven like a user at a keyboard.
class PtyCli {
 public:
  PtyCli(const DaemonProcess& d, std::vector<std::string> args, uint16_t rows = 24,
         uint16_t cols = 80) {
    args.insert(args.begin(), {bin_dir() + "/vireo", "--socket", d.socket()});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    winsize ws{.ws_row = rows, .ws_col = cols, .ws_xpixel = 0, .ws_ypixel = 0};
    int master = -1;
    pid_ = ::forkpty(&master, nullptr, nullptr, &ws);
    if (pid_ == 0) {
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    master_ = Fd(master);
    pidfd_ = Fd(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
  }
  ~PtyCli() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  bool started() const { return pid_ > 0 && master_ && pidfd_; }
  void type(std::string_view keys) {
    ASSERT_EQ(::write(master_.get(), keys.data(), keys.size()), static_cast<ssize_t>(keys.size()));
  }
  void signal(int sig) { ::kill(pid_, sig); }
  void resize(uint16_t rows, uint16_t cols) {
    winsize ws{.ws_row = rows, .ws_col = cols, .ws_xpixel = 0, .ws_ypixel = 0};
    ::ioctl(master_.get(), TIOCSWINSZ, &ws);  // the CLI gets SIGWINCH
  }
  // Reads the terminal until text shows up after what earlier expects consumed.
  bool expect(const std::string& text, std::chrono::seconds timeout = 30s) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (auto at = out_.find(text, seen_); at != std::string::npos) {
        seen_ = at + text.size();
        return true;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0 || !read_some(left)) return false;
    }
  }
  // The CLI's exit status, after reading the rest of its output.
  int wait(std::chrono::seconds timeout = 30s) {
    const auto deadline = Clock::now() + timeout;
    pollfd p{pidfd_.get(), POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (::poll(&p, 1, static_cast<int>(left.count())) != 1) return -1;
    while (read_some(0ms)) {
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  const std::string& output() const { return out_; }

 private:
  bool read_some(std::chrono::milliseconds timeout) {
    pollfd p{master_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
    char buf[4096];
    ssize_t n = ::read(master_.get(), buf, sizeof buf);
    if (n <= 0) return false;  // EIO: the CLI closed the terminal
    out_.append(buf, static_cast<size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  Fd master_, pidfd_;
  std::string out_;
  size_t seen_ = 0;
};

class ContainerAttachTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "containers need root";
    ASSERT_TRUE(d.start()) << "vireod did not start";
    ASSERT_EQ(import_busybox(d, {"sh", "echo", "cat", "sleep", "tty", "stty", "true"}), "");
  }
  void TearDown() override {
    if (::geteuid() != 0) return;
    // Containers outlive vireod by design: remove them before the daemon goes.
    for (const auto& c : json({"ct", "ps", "-a"})) d.cli({"ct", "rm", "-f", c.value("name", "")});
  }

  Json json(std::vector<std::string> args) const { return cli_json(d, std::move(args)); }
  std::string state(const std::string& name) const {
    return json({"ct", "inspect", name}).value("state", "");
  }
  bool no_containers() const { return json({"ct", "ps", "-a"}).empty(); }

  DaemonProcess d;
};

TEST_F(ContainerAttachTest, InteractiveRunRelaysPipedInputOutputAndTheExitStatus) {
  auto r = d.cli({"ct", "run", "-i", "--rm", "--net", "none", "busybox:1", "cat"}, "hello\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hello\n");
  EXPECT_TRUE(no_containers());

  r = d.cli({"ct", "run", "-i", "--rm", "--net", "none", "busybox:1", "sh", "-c",
             "read x; echo got $x; echo oops >&2; exit 3"},
            "abc\n");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out, "got abc\n");
  EXPECT_EQ(r.err, "oops\n");
  EXPECT_TRUE(no_containers());
}

TEST_F(ContainerAttachTest, TtyRunGivesTheContainerATerminalThatFollowsTheCaller) {
  PtyCli cli(d, {"ct", "run", "-i", "-t", "--rm", "--net", "none", "busybox:1", "sh"}, 24, 80);
  ASSERT_TRUE(cli.started());
  // What the container prints is not in the echo of what was typed.
  cli.type("echo $((6*7))\r");
  EXPECT_TRUE(cli.expect("42")) << cli.output();
  cli.type("tty\r");
  EXPECT_TRUE(cli.expect("/dev/pts/")) << cli.output();
  cli.type("stty size\r");
  EXPECT_TRUE(cli.expect("24 80")) << cli.output();
  cli.resize(40, 100);
  cli.type("stty size\r");
  EXPECT_TRUE(cli.expect("40 100")) << cli.output();
  cli.type("exit 5\r");
  EXPECT_EQ(cli.wait(), 5) << cli.output();
  EXPECT_TRUE(no_containers());
}

TEST_F(ContainerAttachTest, AttachToADetachedTerminalDetachAndAttachAgainAfterVireodDied) {
  auto r =
      d.cli({"ct", "run", "-d", "-i", "-t", "--name", "box", "--net", "none", "busybox:1", "sh"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "box\n");
  {
    PtyCli cli(d, {"ct", "attach", "box"});
    ASSERT_TRUE(cli.started());
    cli.type("echo $((6*7))\r");
    EXPECT_TRUE(cli.expect("42")) << cli.output();
    cli.type("\x10\x11");
    EXPECT_EQ(cli.wait(), 0) << cli.output();
  }
  EXPECT_EQ(state("box"), "running");
  // vireod dies and comes back: the monitor kept the shell and its terminal; the new vireod
  // re-adopts the container and attach works again.
  d.kill();
  ASSERT_TRUE(d.start()) << "vireod did not start again";
  EXPECT_EQ(state("box"), "running");
  // Attached again: the same shell, and its exit status comes back.
  PtyCli cli(d, {"ct", "attach", "box"});
  ASSERT_TRUE(cli.started());
  cli.type("echo $((7*8))\r");
  EXPECT_TRUE(cli.expect("56")) << cli.output();
  cli.type("exit 7\r");
  EXPECT_EQ(cli.wait(), 7) << cli.output();
  EXPECT_EQ(json({"ct", "wait", "box"}), 7);
  EXPECT_EQ(state("box"), "exited");
}

TEST_F(ContainerAttachTest, RefusedWithOneLine) {
  // run_process gives the CLI a pipe, not a terminal.
  expect_refused(d, {"ct", "run", "-t", "--rm", "--net", "none", "busybox:1", "true"},
                 "the input device is not a TTY");
  expect_refused(d, {"ct", "run", "-i", "-t", "--net", "none", "busybox:1", "sh"},
                 "the input device is not a TTY");
  EXPECT_TRUE(no_containers());

  ASSERT_EQ(d.cli({"ct", "run", "--name", "done", "--net", "none", "busybox:1", "true"}).exit_code,
            0);
  expect_refused(d, {"ct", "attach", "done"}, "not running");
  ASSERT_EQ(
      d.cli({"ct", "create", "--name", "fresh", "--net", "none", "busybox:1", "true"}).exit_code,
      0);
  expect_refused(d, {"ct", "attach", "fresh"}, "not running");
  expect_refused(d, {"ct", "attach", "nosuch"}, "nosuch");
}

TEST_F(ContainerAttachTest, InteractiveExecRelaysPipedInputOutputAndTheExitStatus) {
  auto r = d.cli({"ct", "run", "-d", "-i", "--name", "box", "--net", "none", "busybox:1", "sh"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = d.cli({"ct", "exec", "-i", "box", "cat"}, "hi\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hi\n");
  EXPECT_EQ(r.err, "");

  r = d.cli({"ct", "exec", "-i", "-e", "X=abc", "box", "sh", "-c",
             "read y; echo got $X $y; echo oops >&2; exit 3"},
            "def\n");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out, "got abc def\n");
  EXPECT_EQ(r.err, "oops\n");
  EXPECT_EQ(state("box"), "running");
}

TEST_F(ContainerAttachTest, TtyExecGivesTheProcessATerminalThatFollowsTheCaller) {
  auto r =
      d.cli({"ct", "run", "-d", "--name", "box", "--net", "none", "busybox:1", "sleep", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  PtyCli cli(d, {"ct", "exec", "-i", "-t", "box", "sh"}, 24, 80);
  ASSERT_TRUE(cli.started());
  cli.type("tty\r");
  EXPECT_TRUE(cli.expect("/dev/pts/")) << cli.output();
  cli.type("stty size\r");
  EXPECT_TRUE(cli.expect("24 80")) << cli.output();
  cli.resize(40, 100);
  cli.type("stty size\r");
  EXPECT_TRUE(cli.expect("40 100")) << cli.output();
  // What the process prints is not in the echo of what was typed.
  cli.type("echo typed$((6*7)); exit 5\r");
  EXPECT_TRUE(cli.expect("typed42")) << cli.output();
  EXPECT_EQ(cli.wait(), 5) << cli.output();
  EXPECT_EQ(state("box"), "running");
}

TEST_F(ContainerAttachTest, ExecProcessIsKilledWhenTheCliGoes) {
  auto r =
      d.cli({"ct", "run", "-d", "--name", "box", "--net", "none", "busybox:1", "sleep", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto execd_sleep_runs = [&] {
    for (const auto& p : json({"ct", "top", "box"}))
      if (p.value("command", "") == "sleep 999") return true;
    return false;
  };
  PtyCli cli(d, {"ct", "exec", "-i", "box", "sh", "-c", "echo ready; exec sleep 999"});
  ASSERT_TRUE(cli.started());
  ASSERT_TRUE(cli.expect("ready")) << cli.output();
  EXPECT_TRUE(execd_sleep_runs());
  cli.signal(SIGTERM);
  EXPECT_EQ(cli.wait(), 128 + SIGTERM) << cli.output();
  // vireod kills it once the stream closed: nothing to wait on from here but the process list.
  const auto deadline = Clock::now() + 10s;
  while (execd_sleep_runs() && Clock::now() < deadline) std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(execd_sleep_runs());
  EXPECT_EQ(state("box"), "running");
}

TEST_F(ContainerAttachTest, InteractiveExecRefusedWithOneLine) {
  ASSERT_EQ(
      d.cli({"ct", "run", "-d", "--name", "box", "--net", "none", "busybox:1", "sleep", "1000"})
          .exit_code,
      0);
  // run_process gives the CLI a pipe, not a terminal.
  expect_refused(d, {"ct", "exec", "-t", "box", "sh"}, "the input device is not a TTY");
  expect_refused(d, {"ct", "exec", "-i", "-t", "box", "sh"}, "the input device is not a TTY");
  ASSERT_EQ(d.cli({"ct", "run", "--name", "done", "--net", "none", "busybox:1", "true"}).exit_code,
            0);
  expect_refused(d, {"ct", "exec", "-i", "done", "cat"}, "not running");
  expect_refused(d, {"ct", "exec", "-i", "nosuch", "cat"}, "nosuch");
}

}  // namespace
}  // namespace vireo::testing
