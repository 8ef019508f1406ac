#include "compute/vm_process.h"

#include "base/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <cstring>
#include <deque>
#include <fstream>

#include "base/file.h"
#include "base/log.h"
#include "base/rollback.h"
#include "base/strings.h"
#include "base/time.h"
#include "compute/qemu_command.h"

extern char** environ;

namespace vireo::compute {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kLogTailLines = 15;
// How often start/attach retry connecting while QEMU sets up its QMP socket.
constexpr auto kConnectRetry = 5ms;
// How long a QEMU that broke the QMP connection during start gets to finish exiting.
constexpr auto kExitGrace = 2000ms;

// Direct system calls: glibc 2.36's <sys/pidfd.h> lacks extern "C" and cannot be used from C++.
int pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

int pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

bool pidfd_exited(int pidfd, int wait_ms) {
  pollfd pfd{pidfd, POLLIN, 0};
  return ::poll(&pfd, 1, wait_ms) > 0;
}

// The same directory however the caller spelled it, so the pidfile path that start() puts on
// QEMU's command line is the one attach() looks for.
RunDir normalized(const std::filesystem::path& dir) {
  auto path = std::filesystem::absolute(dir).lexically_normal();
  if (!path.has_filename()) path = path.parent_path();
  return RunDir{path};
}

// qemu.log of the previous run becomes qemu.log.1; the new one starts with the command line.
Result<Fd> open_fresh_log(const RunDir& run_dir, const std::vector<std::string>& argv) {
  std::error_code ec;
  std::filesystem::rename(run_dir.log(), run_dir.dir / "qemu.log.1", ec);
  Fd fd(::open(run_dir.log().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600));
  if (!fd) return errno_error(fmt::format("open {}", run_dir.log().string()));
  std::string header = fmt::format("# {} starting:", now_timestamp());
  for (const auto& a : argv) header += " " + a;
  header += "\n";
  if (::write(fd.get(), header.data(), header.size()) < 0)
    return errno_error(fmt::format("write {}", run_dir.log().string()));
  return fd;
}

Result<pid_t> read_pidfile(const std::filesystem::path& path) {
  auto text = TRY(read_file(path));
  auto trimmed = std::string(trim(text));
  char* end = nullptr;
  long pid = std::strtol(trimmed.c_str(), &end, 10);
  if (trimmed.empty() || *end != '\0' || pid <= 1 || pid > std::numeric_limits<pid_t>::max())
    return make_error(ErrorCode::kInvalidArgument, "{}: not a pid: '{}'", path.string(), trimmed);
  return static_cast<pid_t>(pid);
}

// True when pid runs the QEMU whose pidfile is pidfile (guards against pid reuse).
bool is_our_qemu(pid_t pid, const std::filesystem::path& pidfile) {
  auto cmdline = read_file(fmt::format("/proc/{}/cmdline", pid));
  if (!cmdline) return false;
  std::string needle = std::string("-pidfile") + '\0' + pidfile.string() + '\0';
  return cmdline->find(needle) != std::string::npos;
}

// The live QEMU of run_dir as a pid and pidfd, or kNotFound saying why there is none.
Result<std::pair<pid_t, Fd>> find_running(const RunDir& run_dir) {
  auto pid = read_pidfile(run_dir.pidfile());
  if (!pid)
    return make_error(ErrorCode::kNotFound, "no QEMU runs from {}: {}", run_dir.dir.string(),
                      pid.error().message());
  Fd pidfd(pidfd_open(*pid));
  if (pidfd && pidfd_exited(pidfd.get(), 0)) {
    // Exited but not reaped: our own child whose runner was dropped. Reap it now.
    siginfo_t si{};
    ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd.get()), &si,
             WEXITED | WNOHANG);
    pidfd.reset();
  }
  if (!pidfd || !is_our_qemu(*pid, run_dir.pidfile()))
    return make_error(ErrorCode::kNotFound, "no QEMU runs from {}: pid {} is gone",
                      run_dir.dir.string(), *pid);
  return std::make_pair(*pid, std::move(pidfd));
}

bool is_not_listening(const Error& e) {
  return e.sys_errno() == ENOENT || e.sys_errno() == ECONNREFUSED;
}

}  // namespace

std::string tail_lines(const std::filesystem::path& path, int lines) {
  std::ifstream in(path);
  std::deque<std::string> last;
  for (std::string line; std::getline(in, line);) {
    last.push_back(std::move(line));
    if (static_cast<int>(last.size()) > lines) last.pop_front();
  }
  std::string out;
  for (const auto& l : last) out += l + "\n";
  return out;
}

std::string ExitInfo::describe() const {
  std::string what;
  if (!status_known)
    what = "exited (status unknown: QEMU was not started by this process)";
  else if (term_signal != 0)
    what = fmt::format("killed by signal {} ({})", term_signal, strsignal(term_signal));
  else
    what = fmt::format("exited with status {}", exit_code);
  if (!shutdown_reason.empty()) what += fmt::format(" ({})", shutdown_reason);
  return what;
}

VmProcess::VmProcess(RunDir run_dir, pid_t pid, Fd pidfd, VmProcessOptions options)
    : run_dir_(std::move(run_dir)),
      pid_(pid),
      pidfd_(std::move(pidfd)),
      stop_watch_(::eventfd(0, EFD_CLOEXEC)),
      options_(std::move(options)) {}

VmProcess::~VmProcess() {
  uint64_t one = 1;
  if (::write(stop_watch_.get(), &one, sizeof one) < 0) spdlog::warn("vm: eventfd write failed");
  if (watcher_.joinable()) watcher_.join();
  console_.reset();
  qmp_.reset();
}

Result<std::unique_ptr<VmProcess>> VmProcess::start(const VmSpec& spec,
                                                    const std::filesystem::path& run_dir,
                                                    VmProcessOptions options) {
  RunDir rd = normalized(run_dir);
  QemuPaths paths{.qmp_socket = rd.qmp_socket().string(),
                  .console_socket = rd.console_socket().string(),
                  .pidfile = rd.pidfile().string()};
  auto argv = TRY(build_qemu_command(spec, paths, options.qemu_binary));
  // Paused until QMP and the console log are connected, so no console output is lost.
  argv.insert(argv.begin() + 1, "-S");
  if (options.incoming) argv.insert(argv.begin() + 2, {"-incoming", "defer"});
  TRY_CTX(make_dirs(rd.dir, 0700), "VM {}", spec.name);
  if (auto running = find_running(rd))
    return make_error(ErrorCode::kConflict, "VM {} already runs from {} (pid {})", spec.name,
                      run_dir.string(), running->first);
  std::error_code ignored;  // a stale file that cannot be removed makes QEMU fail, with a message
  for (const auto& stale : {rd.qmp_socket(), rd.console_socket(), rd.pidfile()})
    std::filesystem::remove(stale, ignored);
  auto log = TRY_CTX(open_fresh_log(rd, argv), "VM {}", spec.name);
  pid_t pid = TRY_CTX(spawn_detached(argv, log.get()), "VM {}", spec.name);
  Fd pidfd(pidfd_open(pid));
  if (!pidfd) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return errno_error("pidfd_open");
  }
  std::unique_ptr<VmProcess> vm(new VmProcess(rd, pid, std::move(pidfd), std::move(options)));
  // Declared after vm so that it runs first: a failed start leaves no QEMU behind.
  Rollback rollback;
  rollback.add([v = vm.get()] { v->kill_and_reap(); });
  TRY_CTX(vm->connect_qmp(Clock::now() + vm->options_.start_timeout), "VM {}", spec.name);
  vm->connect_console();
  if (!vm->options_.incoming) TRY_CTX(vm->qmp_->execute("cont"), "VM {}", spec.name);
  vm->watcher_ = std::thread([v = vm.get()] { v->watch(); });
  rollback.commit();
  return vm;
}

Result<std::unique_ptr<VmProcess>> VmProcess::attach(const std::filesystem::path& run_dir,
                                                     VmProcessOptions options) {
  RunDir rd = normalized(run_dir);
  auto running = find_running(rd);
  if (!running) {
    std::string tail = tail_lines(rd.log(), kLogTailLines);
    return make_error(ErrorCode::kNotFound, "attach: {}{}{}", running.error().message(),
                      tail.empty() ? "" : "; its log ends with:\n", tail);
  }
  auto [pid, pidfd] = std::move(*running);
  std::unique_ptr<VmProcess> vm(new VmProcess(rd, pid, std::move(pidfd), std::move(options)));
  TRY_CTX(vm->connect_qmp(Clock::now() + vm->options_.start_timeout), "attach {}",
          run_dir.string());
  vm->connect_console();
  TRY_CTX(vm->resume_if_prelaunch(), "attach {}", run_dir.string());
  vm->watcher_ = std::thread([v = vm.get()] { v->watch(); });
  return vm;
}

// "prelaunch" means the process that started QEMU died between spawning it (paused) and
// resuming it: finish that start now that the console is connected.
Result<void> VmProcess::resume_if_prelaunch() {
  auto state = TRY(status());
  if (state != "prelaunch") return {};
  spdlog::info("vm {}: QEMU was never resumed by its starter, resuming", run_dir_.dir.string());
  return resume();
}

// Retries until QEMU listens on its QMP socket; fails at once if QEMU exits meanwhile.
Result<void> VmProcess::connect_qmp(Clock::time_point deadline) {
  QmpOptions qmp_options{.on_event = [this](const QmpEvent& e) { on_qmp_event(e); }};
  auto exited_error = [this] {
    auto info = collect_exit();
    return make_error(ErrorCode::kUnavailable, "QEMU {} during start; its log ends with:\n{}",
                      info.describe(), info.log_tail);
  };
  for (;;) {
    if (pidfd_exited(pidfd_.get(), 0)) return exited_error();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left <= 0ms)
      return make_error(ErrorCode::kTimeout, "QMP socket {} did not answer in time",
                        run_dir_.qmp_socket().string());
    qmp_options.timeout = left;
    auto client = QmpClient::connect(run_dir_.qmp_socket().string(), qmp_options);
    if (client) {
      qmp_ = std::move(*client);
      return {};
    }
    if (!is_not_listening(client.error())) {
      // QEMU dropping the connection usually means it is exiting on a start error: its exit
      // status and log say more than the broken connection.
      if (pidfd_exited(pidfd_.get(), static_cast<int>(kExitGrace.count()))) return exited_error();
      return std::unexpected(client.error());
    }
    pidfd_exited(pidfd_.get(), static_cast<int>(kConnectRetry.count()));
  }
}

void VmProcess::connect_console() {
  auto console = ConsoleLog::open(run_dir_.console_socket().string(), run_dir_.console_log());
  if (!console) return spdlog::warn("vm {}: {}", run_dir_.dir.string(), console.error().message());
  console_ = std::move(*console);
}

void VmProcess::on_qmp_event(const QmpEvent& event) {
  if (event.name == "SHUTDOWN" && event.data.contains("reason") &&
      event.data["reason"].is_string()) {
    std::lock_guard lock(mutex_);
    shutdown_reason_ = event.data["reason"].get<std::string>();
  }
  if (event.name == "DEVICE_DELETED" && event.data.contains("device") &&
      event.data["device"].is_string()) {
    std::lock_guard lock(mutex_);
    deleted_devices_.insert(event.data["device"].get<std::string>());
    deleted_cv_.notify_all();
  }
  if (options_.on_event) options_.on_event(event);
}

Result<void> VmProcess::delete_device(const std::string& id, std::chrono::milliseconds timeout) {
  {
    std::lock_guard lock(mutex_);
    deleted_devices_.erase(id);
  }
  TRY(qmp_->execute("device_del", {{"id", id}}));
  std::unique_lock lock(mutex_);
  if (!deleted_cv_.wait_for(lock, timeout, [&] { return deleted_devices_.contains(id) || exit_; }))
    return make_error(ErrorCode::kTimeout,
                      "the guest did not release device {} within {} s (is it using it?)", id,
                      std::chrono::duration_cast<std::chrono::seconds>(timeout).count());
  if (!deleted_devices_.erase(id))
    return make_error(ErrorCode::kUnavailable, "QEMU exited while unplugging {}", id);
  return {};
}

ExitInfo VmProcess::collect_exit() {
  ExitInfo info;
  siginfo_t si{};
  if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &si, WEXITED) ==
      0) {
    info.status_known = true;
    if (si.si_code == CLD_EXITED)
      info.exit_code = si.si_status;
    else
      info.term_signal = si.si_status;
  }
  {
    std::lock_guard lock(mutex_);
    info.shutdown_reason = shutdown_reason_;
  }
  info.log_tail = tail_lines(run_dir_.log(), kLogTailLines);
  return info;
}

void VmProcess::watch() {
  pollfd fds[2] = {{pidfd_.get(), POLLIN, 0}, {stop_watch_.get(), POLLIN, 0}};
  for (;;) {
    int r = ::poll(fds, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || fds[1].revents) return;
    if (fds[0].revents) break;
  }
  ExitInfo info = collect_exit();
  spdlog::info("vm {}: QEMU {}", run_dir_.dir.string(), info.describe());
  // The callback runs before waiters wake, so whoever waits sees its effects.
  if (options_.on_exit) options_.on_exit(info);
  std::lock_guard lock(mutex_);
  exit_ = info;
  exited_cv_.notify_all();
  deleted_cv_.notify_all();
}

std::optional<ExitInfo> VmProcess::wait_exit(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  exited_cv_.wait_for(lock, timeout, [&] { return exit_.has_value(); });
  return exit_;
}

bool VmProcess::exited() const {
  std::lock_guard lock(mutex_);
  return exit_.has_value();
}

void VmProcess::kill_and_reap() {
  (void)send_signal(SIGKILL);
  siginfo_t si{};
  ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &si, WEXITED);
}

Result<void> VmProcess::send_signal(int sig) {
  if (pidfd_send_signal(pidfd_.get(), sig) != 0 && errno != ESRCH)
    return errno_error(fmt::format("signal QEMU pid {}", pid_));
  return {};
}

Result<ExitInfo> VmProcess::stop(StopMode mode, std::chrono::milliseconds timeout) {
  if (auto info = wait_exit(0ms)) return *info;
  if (mode == StopMode::kGraceful) {
    auto asked = qmp_->execute("system_powerdown");
    if (!asked) spdlog::warn("vm {}: {}", run_dir_.dir.string(), asked.error().message());
    if (auto info = wait_exit(asked ? timeout : 0ms)) return *info;
    spdlog::info("vm {}: guest did not power off within {} ms, forcing", run_dir_.dir.string(),
                 timeout.count());
  }
  // quit lets QEMU flush its disks; SIGKILL is for a QEMU that no longer answers.
  auto quit = qmp_->execute("quit", nullptr, 2s);
  if (auto info = wait_exit(quit ? 3s : 0ms)) return *info;
  TRY(send_signal(SIGKILL));
  if (auto info = wait_exit(5s)) return *info;
  return make_error(ErrorCode::kTimeout, "QEMU pid {} survived SIGKILL", pid_);
}

Result<void> VmProcess::pause() {
  TRY(qmp_->execute("stop"));
  return {};
}

Result<void> VmProcess::resume() {
  TRY(qmp_->execute("cont"));
  return {};
}

Result<std::string> VmProcess::status() {
  auto reply = TRY(qmp_->execute("query-status"));
  if (!reply.is_object() || !reply.contains("status") || !reply["status"].is_string())
    return make_error(ErrorCode::kInternal, "query-status: unexpected reply {}", dump_json(reply));
  return reply["status"].get<std::string>();
}

}  // namespace vireo::compute
