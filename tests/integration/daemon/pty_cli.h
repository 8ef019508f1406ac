#pragma once
// The CLI on a pseudo-terminal of its own (forkpty), driven like a user at a keyboard: for the
// interactive commands (ct run -it, ct attach, ct exec -it, vm console).
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"
#include "daemon_process.h"

namespace vireo::testing {

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
  bool expect(const std::string& text, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto at = out_.find(text, seen_); at != std::string::npos) {
        seen_ = at + text.size();
        return true;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !read_some(left)) return false;
    }
  }
  // The CLI's exit status, after reading the rest of its output.
  int wait(std::chrono::seconds timeout = std::chrono::seconds(30)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    pollfd p{pidfd_.get(), POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (::poll(&p, 1, static_cast<int>(left.count())) != 1) return -1;
    while (read_some(std::chrono::milliseconds(0))) {
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

}  // namespace vireo::testing
