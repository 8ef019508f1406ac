// RUN steps and stale scratch space (run_step.h).
#include "image/build/run_step.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <memory>
#include <set>

#include "base/fd.h"
#include "base/file.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/rollback.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "base/time.h"
#include "container/default_spec.h"
#include "image/build/builder.h"
#include "image/build/containerfile.h"
#include "image/build/layer_diff.h"
#include "image/image_store.h"
#include "image/layer_unpack.h"
#include "image/media_types.h"
#include "image/rootfs.h"
#include "image/tree.h"

namespace vireo::image::build {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr auto kKillGrace = 10s;

std::string read_tail(const fs::path& file, size_t max) {
  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return {};
  off_t start = st.st_size > static_cast<off_t>(max) ? st.st_size - static_cast<off_t>(max) : 0;
  std::string out(static_cast<size_t>(st.st_size - start), '\0');
  ssize_t n = ::pread(fd.get(), out.data(), out.size(), start);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

void runtime_cleanup(const fs::path& runtime, const fs::path& state_root, const std::string& id) {
  (void)run_process({runtime.string(), "--root", state_root.string(), "delete", "--force", id},
                    {.timeout = 30s});
}

bool process_alive(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno != ESRCH;
}

}  // namespace

Result<RunOutcome> run_runtime(const fs::path& runtime, const fs::path& state_root,
                               const fs::path& bundle, const fs::path& log, std::stop_token stop) {
  std::string id = "vireo-build-" + random_hex(6);
  Fd log_fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!log_fd) return errno_error("create " + log.string());
  std::vector<std::string> argv = {
      runtime.string(), "--root", state_root.string(), "run", "--bundle", bundle.string(), id};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log_fd.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, log_fd.get(), 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigfillset(&defaults);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args = c_strings(argv);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return std::unexpected(Error::from_errno(rc, "start " + runtime.string()));

  Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  Fd wake(::eventfd(0, EFD_CLOEXEC));
  std::stop_callback on_stop(stop, [&wake] {
    uint64_t one = 1;
    (void)!::write(wake.get(), &one, sizeof one);
  });
  bool cancelled = false;
  while (pidfd && wake) {
    pollfd fds[2] = {{pidfd.get(), POLLIN, 0}, {wake.get(), POLLIN, 0}};
    int r = ::poll(fds, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (fds[0].revents & POLLIN)) break;
    if (fds[1].revents & POLLIN) {
      // The container may not exist yet: kill until the runtime returns, then the runtime itself
      // (the forced delete below ends a container it left).
      cancelled = true;
      auto deadline = std::chrono::steady_clock::now() + kKillGrace;
      pollfd exit_fd = {pidfd.get(), POLLIN, 0};
      do {
        (void)run_process(
            {runtime.string(), "--root", state_root.string(), "kill", "--all", id, "KILL"},
            {.timeout = 5s});
      } while (::poll(&exit_fd, 1, 200) == 0 && std::chrono::steady_clock::now() < deadline);
      if (::poll(&exit_fd, 1, 0) <= 0) ::kill(pid, SIGKILL);
      break;
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (cancelled) {
    runtime_cleanup(runtime, state_root, id);
    return make_error(ErrorCode::kCancelled, "build cancelled");
  }
  RunOutcome out;
  if (WIFEXITED(status)) out.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) {
    out.signal = WTERMSIG(status);
    runtime_cleanup(runtime, state_root, id);
  }
  out.output = read_tail(log, kMaxStepOutput);
  return out;
}

std::string last_lines(const std::string& output, int n) {
  std::vector<std::string> lines;
  for (const auto& l : split(output, '\n')) {
    auto t = trim(l);
    if (!t.empty()) lines.emplace_back(t);
  }
  if (lines.size() > static_cast<size_t>(n)) lines.erase(lines.begin(), lines.end() - n);
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "" : " | ") + l;
  return out;
}

// Removes what builds of a dead daemon left: containers, mounts, files.
void sweep_stale(const fs::path& tmp_root, const fs::path& runtime) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(tmp_root, ec)) {
    std::string name = e.path().filename().string();
    pid_t pid = static_cast<pid_t>(std::atoi(name.c_str()));
    if (pid <= 0 || pid == ::getpid() || process_alive(pid)) continue;
    fs::path state = e.path() / "runtime";
    std::error_code ec2;
    if (!runtime.empty() && fs::exists(state, ec2))
      for (const auto& c : fs::directory_iterator(state, ec2))
        if (c.is_directory(ec2)) runtime_cleanup(runtime, state, c.path().filename().string());
    for (const auto& s : fs::directory_iterator(e.path(), ec2))
      if (s.path().filename().string().starts_with("step-")) (void)release_rootfs(s.path());
    (void)remove_tree(e.path());
  }
}

}  // namespace vireo::image::build
