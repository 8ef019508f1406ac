#pragma once
// DaemonProcess: a real vireod on a temporary state root and socket, for integration tests.
// Started in the foreground as a child; stop() sends SIGTERM, kill() sends SIGKILL.
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "base/ids.h"
#include "base/subprocess.h"

namespace vireo::testing {

inline std::string bin_dir() {
  const char* d = std::getenv("VIREO_BIN_DIR");
  return d ? d : "build/bin";
}

class DaemonProcess {
 public:
  DaemonProcess()
      : dir_(std::filesystem::temp_directory_path() / ("vireo-it-" + random_hex(6))),
        root_(dir_ / "root"),
        socket_(dir_ / "vireo.sock") {
    std::filesystem::create_directories(dir_);
  }
  ~DaemonProcess() {
    kill();
    stop_netd();
    stop_storaged();
    std::filesystem::remove_all(dir_);
  }

  // vireo-netd outlives vireod by design (own session); tests end it themselves.
  pid_t netd_pid() const {
    std::ifstream in(root_ / "network" / "netd.pid");
    pid_t pid = -1;
    in >> pid;
    return pid;
  }
  void stop_netd() {
    pid_t pid = netd_pid();
    if (pid <= 0 || ::kill(pid, SIGTERM) != 0) return;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (::kill(pid, 0) == 0 && std::chrono::steady_clock::now() < deadline) {
      ::waitpid(pid, nullptr, WNOHANG);  // our grandchild is reaped by init, or by us if adopted
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  // vireo-storaged too (started by vireod for its state root, outlives it).
  pid_t storaged_pid() const {
    std::ifstream in(root_ / "storage" / "storaged.pid");
    pid_t pid = -1;
    in >> pid;
    return pid;
  }
  void stop_storaged() {
    pid_t pid = storaged_pid();
    if (pid <= 0 || ::kill(pid, SIGTERM) != 0) return;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (::kill(pid, 0) == 0 && std::chrono::steady_clock::now() < deadline) {
      ::waitpid(pid, nullptr, WNOHANG);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  // Starts vireod and waits (bounded) until its socket answers. Returns false on failure.
  bool start(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {bin_dir() + "/vireod",
                                     "--root",
                                     root_.string(),
                                     "--socket",
                                     socket_.string(),
                                     "--foreground",
                                     "--enable-debug-api",
                                     "--log-level",
                                     "warn"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    if (::posix_spawn(&pid_, args[0], nullptr, nullptr, args.data(), environ) != 0) return false;
    return wait_ready();
  }

  // SIGTERM and wait; returns the exit status (-1 if it had to be killed).
  int stop() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    return reap(std::chrono::seconds(10));
  }

  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    reap(std::chrono::seconds(10));
  }

  // Runs the vireo CLI against this daemon.
  ProcessResult cli(std::vector<std::string> args, const std::string& input = {}) const {
    args.insert(args.begin(), {bin_dir() + "/vireo", "--socket", socket_.string()});
    auto r = run_process(args, {.input = input, .timeout = std::chrono::seconds(30)});
    return r ? *r : ProcessResult{.exit_code = -1, .err = r.error().message()};
  }

  const std::filesystem::path& root() const { return root_; }
  const std::filesystem::path& dir() const { return dir_; }
  std::string socket() const { return socket_.string(); }
  pid_t pid() const { return pid_; }

 private:
  bool wait_ready() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      if (connectable()) return true;
      std::this_thread::sleep_for(
          std::chrono::milliseconds(10));  // polling a socket that has no event to await
    }
    return false;
  }
  bool connectable() const {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_.c_str());
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
  }
  int reap(std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return -1;
  }

  std::filesystem::path dir_, root_, socket_;
  pid_t pid_ = -1;
};

}  // namespace vireo::testing
