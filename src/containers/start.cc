// Starting a container: its overlay (mounted again after a reboot), vireo-monitor with a ready
// pipe, the ready line, and the pidfds the watcher and the signals use.
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/file.h"
#include "base/subprocess.h"
#include "base/time.h"
#include "containers/engine_impl.h"

extern char** environ;

namespace vireo::containers {

namespace fs = std::filesystem;

namespace {

bool is_mountpoint(const fs::path& p) {
  struct stat a {
  }, b{};
  if (::stat(p.c_str(), &a) != 0 || ::stat(p.parent_path().c_str(), &b) != 0) return false;
  return a.st_dev != b.st_dev;
}

// Reads the monitor's one ready line from fd, waiting at most timeout.
Result<std::string> read_ready_line(int fd, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::string line;
  char buf[512];
  while (line.find('\n') == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
      return make_error(ErrorCode::kTimeout, "vireo-monitor did not report within {} s",
                        timeout.count() / 1000);
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("poll ready fd");
    if (n == 0) continue;
    ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return errno_error("read ready fd");
    if (got == 0) break;
    line.append(buf, static_cast<size_t>(got));
  }
  if (line.empty())
    return make_error(ErrorCode::kIo, "vireo-monitor exited without reporting (see monitor.log)");
  return line.substr(0, line.find('\n'));
}

// Starts the monitor (which detaches: the process started here exits at once) with the write end
// of the ready pipe as its fd 3.
Result<void> spawn_monitor(const std::vector<std::string>& argv, int ready_w) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, ready_w, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  auto args = c_strings(argv);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, argv[0].c_str(), &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return std::unexpected(Error::from_errno(rc, "spawn " + argv[0]));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return make_error(ErrorCode::kInternal, "vireo-monitor refused its command line (status {})",
                      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  return {};
}

}  // namespace

Result<pid_t> read_pid(const fs::path& path) {
  std::string text = TRY(read_file(path));
  try {
    int pid = std::stoi(text);
    if (pid > 0) return pid;
  } catch (...) {
  }
  return make_error(ErrorCode::kIo, "{}: not a pid", path.string());
}

// After a host reboot the overlay is gone: mount it again over the same lowers and upper.
Result<void> Engine::Impl::ensure_rootfs(Record& r) {
  fs::path bundle = r.dir / "bundle";
  if (r.lower_dirs.empty() || is_mountpoint(bundle / "rootfs")) return {};
  std::string lower;
  for (const auto& l : r.lower_dirs) lower += (lower.empty() ? "" : ":") + l;
  std::string data = fmt::format("lowerdir={},upperdir={},workdir={}", lower,
                                 (bundle / "upper").string(), (bundle / "work").string());
  if (::mount("overlay", (bundle / "rootfs").c_str(), "overlay", 0, data.c_str()) != 0)
    return errno_error("mount the overlay of container " + r.c.name);
  return {};
}

Result<void> Engine::Impl::start_locked(const std::shared_ptr<Record>& r) {
  TRY(ensure_rootfs(*r));
  TRY(ensure_network(*r));
  TRY(ensure_volumes(*r));
  fs::path mdir = monitor_dir(*r);
  TRY(make_dirs(mdir, 0700));
  std::vector<std::string> argv = {o.monitor,
                                   "--id",
                                   r->c.id,
                                   "--bundle",
                                   (r->dir / "bundle").string(),
                                   "--runtime",
                                   o.runtime,
                                   "--runtime-root",
                                   runtime_root.string(),
                                   "--state-dir",
                                   mdir.string(),
                                   "--ready-fd",
                                   "3"};
  if (r->req.tty) argv.push_back("--tty");
  if (r->req.log_max_size)
    argv.insert(argv.end(), {"--log-max-size", std::to_string(*r->req.log_max_size)});
  if (r->req.log_max_files)
    argv.insert(argv.end(), {"--log-max-files", std::to_string(*r->req.log_max_files)});
  if (r->req.stdin_open && !r->req.tty) argv.push_back("--stdin");
  for (auto& arg : network_args(*r)) argv.push_back(std::move(arg));
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return errno_error("pipe");
  Fd rd(p[0]), wr(p[1]);
  if (wr.get() == 3) wr.reset(::fcntl(p[1], F_DUPFD_CLOEXEC, 4));  // dup2(3, 3) keeps CLOEXEC
  TRY(spawn_monitor(argv, wr.get()));
  wr.reset();
  auto line = read_ready_line(rd.get(), o.start_timeout);
  if (!line) {
    // A monitor that hangs is killed, and what the runtime may hold of the container deleted.
    if (auto pid = read_pid(fs::path(mdir) / "monitor.pid"); pid) ::kill(*pid, SIGKILL);
    (void)run_process({o.runtime, "--root", runtime_root.string(), "delete", "--force", r->c.id},
                      RunOptions{.timeout = std::chrono::seconds(10)});
    return std::unexpected(std::move(line.error()).with_context("start " + r->c.name));
  }
  auto ready = parse_json(*line);
  if (!ready || !ready->is_object())
    return make_error(ErrorCode::kInternal, "start {}: bad ready line from vireo-monitor: {}",
                      r->c.name, *line);
  if (ready->contains("error"))
    return make_error(ErrorCode::kConflict, "start {}: {}", r->c.name,
                      ready->value("error", std::string("unknown error")));
  int pid = ready->value("pid", 0);
  auto mpid = read_pid(fs::path(mdir) / "monitor.pid");
  Fd monitor_fd(mpid ? pidfd_open(*mpid) : -1);
  Fd ctr_fd(pidfd_open(pid));
  Container snap;
  {
    std::lock_guard lock(mu);
    r->c.state = State::kRunning;
    r->c.pid = pid;
    r->c.exit_code.reset();
    r->c.oom_killed = false;
    r->c.error.clear();
    r->c.started_at = now_timestamp();
    r->c.finished_at.clear();
    r->ctr_pidfd = std::move(ctr_fd);
    r->run_started = Clock::now();
    r->restart_at.reset();
    reset_health(*r);
    r->version++;
    snap = r->c;
  }
  health_cv.notify_all();
  persist(*r);
  // The monitor may be gone already (a container that exits at once): the watcher then reads
  // exit.json as for any other end.
  watch(r, std::move(monitor_fd));
  emit("container-started", snap);
  return {};
}

}  // namespace vireo::containers
