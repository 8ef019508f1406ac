#include "monitor/process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/fd.h"
#include "base/process_io.h"

namespace vireo::monitor {

Result<pid_t> spawn(const std::vector<std::string>& argv, int in, int out, int err) {
  return spawn_with_stdio(argv, in, out, err);
}

Result<int> wait_for(pid_t pid) {
  int status = 0;
  for (;;) {
    if (::waitpid(pid, &status, 0) == pid) return status;
    if (errno != EINTR) return errno_error("waitpid");
  }
}

Result<void> write_file_atomic(const std::string& dir, const std::string& name,
                               std::string_view data) {
  std::string path = dir + "/" + name, tmp = path + ".tmp";
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return errno_error("create " + tmp);
  while (!data.empty()) {
    ssize_t n = ::write(fd.get(), data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("write " + tmp);
    data.remove_prefix(static_cast<size_t>(n));
  }
  if (::fsync(fd.get()) != 0) return errno_error("fsync " + tmp);
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) return errno_error("rename to " + path);
  return {};
}

std::string read_small_file(const std::string& path, size_t max) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  std::string out;
  char buf[4096];
  while (out.size() < max) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string describe_status(std::string_view what, int status) {
  std::string s(what);
  if (WIFEXITED(status)) return s + " exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return s + " was killed by signal " + std::to_string(WTERMSIG(status));
  return s + " stopped";
}

}  // namespace vireo::monitor
