// Attaching to containers through vireod and the CLI (root), as a Docker user does: `vireo ct
// run -i` with piped input (output and exit status back), `vireo ct run -it` under a
// pseudo-terminal (a terminal inside, typed input reaching sh, resizes reaching the container),
// `vireo ct attach` to a detached -d -i -t container with Ctrl-P Ctrl-Q detaching, and refusals:
// -t without a terminal, attach to a container that does not run. `vireo ct exec -i [-t]` into a
// running container the same ways.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "base/fd.h"
#include "base/json.h"
#include "cli_expect.h"
#include "daemon_process.h"
#include "pty_cli.h"

namespace vireo::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

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
