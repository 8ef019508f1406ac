#include "base/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "base/fd.h"
#include "base/strings.h"

extern char** environ;

namespace vireo {

namespace {

struct Pipe {
  Fd read, write;
};

Result<Pipe> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return errno_error("pipe");
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

// Moves stdin data in and stdout/stderr data out until all are closed or the deadline passes.
Result<void> pump(Fd& in, std::string_view input, Fd& out, std::string& out_buf, Fd& err,
                  std::string& err_buf,
                  std::optional<std::chrono::steady_clock::time_point> deadline) {
  size_t written = 0;
  if (input.empty()) in.reset();
  if (in) ::fcntl(in.get(), F_SETFL, O_NONBLOCK);
  char buf[16384];
  while (in || out || err) {
    pollfd fds[3];
    int n = 0;
    if (in) fds[n++] = {in.get(), POLLOUT, 0};
    if (out) fds[n++] = {out.get(), POLLIN, 0};
    if (err) fds[n++] = {err.get(), POLLIN, 0};
    int wait_ms = -1;
    if (deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return make_error(ErrorCode::kTimeout, "timed out");
      wait_ms = static_cast<int>(left.count());
    }
    int r = ::poll(fds, static_cast<nfds_t>(n), wait_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("poll");
    for (int i = 0; i < n; ++i) {
      if (!fds[i].revents) continue;
      if (in && fds[i].fd == in.get()) {
        ssize_t w = ::write(in.get(), input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN) in.reset();
        if (written == input.size()) in.reset();
        continue;
      }
      Fd& src = (out && fds[i].fd == out.get()) ? out : err;
      std::string& dst = (&src == &out) ? out_buf : err_buf;
      ssize_t got = ::read(src.get(), buf, sizeof buf);
      if (got > 0)
        dst.append(buf, static_cast<size_t>(got));
      else if (got == 0 || errno != EINTR)
        src.reset();
    }
  }
  return {};
}

}  // namespace

Result<ProcessResult> run_process(const std::vector<std::string>& argv, const RunOptions& options) {
  if (argv.empty()) return make_error(ErrorCode::kInvalidArgument, "run_process: empty argv");
  auto in = TRY(make_pipe());
  auto out = TRY(make_pipe());
  auto err = TRY(make_pipe());
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.read.get(), 0);
  posix_spawn_file_actions_adddup2(&actions, out.write.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err.write.get(), 2);
  // Nothing else the parent holds (listening sockets, other VMs' files) leaks into the child.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);

  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) env_store.emplace_back(*e);
  for (const auto& kv : options.extra_env) env_store.push_back(kv);
  std::vector<char*> envp = c_strings(env_store);
  std::vector<char*> args = c_strings(argv);

  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return std::unexpected(Error::from_errno(rc, fmt::format("run {}", argv[0])));
  in.read.reset();
  out.write.reset();
  err.write.reset();

  ProcessResult result;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (options.timeout) deadline = std::chrono::steady_clock::now() + *options.timeout;
  auto pumped = pump(in.write, options.input, out.read, result.out, err.read, result.err, deadline);
  if (!pumped) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!pumped) return std::unexpected(std::move(pumped.error()).with_context(argv[0]));
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.term_signal = WTERMSIG(status);
  return result;
}

std::string find_program(const std::string& name) {
  const char* path = ::getenv("PATH");
  for (const auto& dir : split(path ? path : "/usr/sbin:/usr/bin:/sbin:/bin", ':')) {
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

std::vector<char*> c_strings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

std::string find_sibling_program(const std::string& name) {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto candidate = self.parent_path() / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return find_program(name);
}

Result<pid_t> spawn_detached(const std::vector<std::string>& argv, int log_fd) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, log_fd, 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGUSR1, SIGUSR2, SIGCHLD, SIGALRM})
    sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args = c_strings(argv);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return std::unexpected(Error::from_errno(rc, fmt::format("start {}", argv[0])));
  return pid;
}

}  // namespace vireo
