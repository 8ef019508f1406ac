#include "test_peers.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "base/fd.h"
#include "base/ids.h"

extern char** environ;

namespace vireo::testing {

fs::path make_temp_dir(const std::string& prefix) {
  fs::path dir = fs::temp_directory_path() / (prefix + "-" + random_hex(6));
  fs::create_directories(dir);
  return dir;
}

ProcessResult run_bounded(const std::vector<std::string>& argv, std::chrono::seconds limit) {
  auto r = run_process(argv, {.timeout = limit});
  if (!r) return ProcessResult{.exit_code = -1, .err = r.error().message()};
  return *r;
}

bool have_programs(const std::vector<std::string>& names) {
  for (const auto& n : names)
    if (find_program(n).empty()) return false;
  return true;
}

ReadyProcess::ReadyProcess(const std::string& program, const std::vector<std::string>& args) {
  const char* bin_dir = std::getenv("VIREO_BIN_DIR");
  std::string bin = std::string(bin_dir ? bin_dir : ".") + "/" + program;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return;
  Fd read_end(fds[0]), write_end(fds[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
  std::vector<std::string> argv = {bin};
  argv.insert(argv.end(), args.begin(), args.end());
  auto cargv = c_strings(argv);
  int rc = posix_spawn(&pid_, bin.c_str(), &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  write_end.reset();
  if (rc != 0) {
    pid_ = -1;
    return;
  }
  // The ready line, bounded in time; EOF means the server failed to start.
  std::string line;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{read_end.get(), POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) continue;
    char buf[512];
    ssize_t n = ::read(read_end.get(), buf, sizeof buf);
    if (n <= 0) break;
    line.append(buf, size_t(n));
  }
  if (line.rfind("ready", 0) == 0) ready_line_ = line.substr(0, line.find('\n'));
}

bool ReadyProcess::alive() const {
  return pid_ > 0 && ::kill(pid_, 0) == 0;
}

int ReadyProcess::stop() {
  if (pid_ < 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

ReadyProcess::~ReadyProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

}  // namespace vireo::testing
