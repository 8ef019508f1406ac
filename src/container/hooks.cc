#include "container/hooks.h"
#include "base/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fd.h"
#include "container/linux_sys.h"

namespace vireo::container {

namespace {

Result<void> run_hook(const Hook& h, const std::string& input, std::string_view phase) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return errno_error("pipe");
  Fd read_end(fds[0]), write_end(fds[1]);
  std::vector<std::string> args = h.args.empty() ? std::vector<std::string>{h.path} : h.args;
  auto argv = c_strings(args);
  auto envp = c_strings(h.env);
  pid_t pid = ::fork();
  if (pid < 0) return errno_error("fork");
  if (pid == 0) {
    ::dup2(read_end.get(), 0);
    ::execve(h.path.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  read_end.reset();
  Fd pidfd = TRY(sys::pidfd_open(pid));
  // A hook may exit without reading its stdin; that is not an error.
  ::signal(SIGPIPE, SIG_IGN);
  (void)sys::write_all(write_end.get(), input);
  write_end.reset();
  int timeout_ms = h.timeout ? *h.timeout * 1000 : -1;
  bool exited = TRY(sys::pidfd_wait_exit(pidfd.get(), timeout_ms));
  if (!exited) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!exited)
    return make_error(ErrorCode::kTimeout, "{} hook {}: timed out after {}s", phase, h.path,
                      *h.timeout);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
    return make_error(ErrorCode::kNotFound, "{} hook {}: could not be executed", phase, h.path);
  return make_error(ErrorCode::kIo, "{} hook {}: failed with {} {}", phase, h.path,
                    WIFEXITED(status) ? "exit status" : "signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

}  // namespace

Result<void> run_hooks(const std::vector<Hook>& hooks, const Json& state, std::string_view phase) {
  if (hooks.empty()) return {};
  std::string input = state.dump();
  for (const auto& h : hooks) TRY(run_hook(h, input, phase));
  return {};
}

}  // namespace vireo::container
