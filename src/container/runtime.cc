// Lifecycle commands that act on an existing container: start, state, kill, delete, list, ps,
// pause, resume, update. Creation (and run) is in runtime_create.cc.
#include "container/runtime.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <array>

#include "base/log.h"
#include "container/cgroup.h"
#include "container/hooks.h"
#include "container/linux_sys.h"

namespace vireo::container {

namespace {

struct SignalName {
  std::string_view name;
  int number;
};
constexpr std::array<SignalName, 31> kSignals = {{
    {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},     {"ILL", SIGILL},
    {"TRAP", SIGTRAP},     {"ABRT", SIGABRT}, {"IOT", SIGIOT},       {"BUS", SIGBUS},
    {"FPE", SIGFPE},       {"KILL", SIGKILL}, {"USR1", SIGUSR1},     {"SEGV", SIGSEGV},
    {"USR2", SIGUSR2},     {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},     {"TERM", SIGTERM},
    {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT},     {"STOP", SIGSTOP},
    {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},
    {"XCPU", SIGXCPU},     {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
    {"WINCH", SIGWINCH},   {"IO", SIGIO},     {"SYS", SIGSYS},
}};

// A pidfd for the container's init, or an error when it is gone or the pid was reused.
Result<Fd> open_init(const State& s) {
  Fd pidfd = TRY(sys::pidfd_open(s.pid));
  auto st = sys::proc_stat(s.pid);
  if (!st || st->start_time != s.start_time)
    return make_error(ErrorCode::kConflict, "container \"{}\" is not running", s.id);
  return pidfd;
}

}  // namespace

Result<int> parse_signal(std::string_view text) {
  if (!text.empty() && std::all_of(text.begin(), text.end(), ::isdigit)) {
    int n = std::atoi(std::string(text).c_str());
    if (n > 0 && n < 65) return n;
  }
  std::string_view name = text.starts_with("SIG") ? text.substr(3) : text;
  for (const auto& s : kSignals)
    if (s.name == name) return s.number;
  if (name.starts_with("RTMIN") || name.starts_with("RTMAX")) {
    int base = name.starts_with("RTMIN") ? SIGRTMIN : SIGRTMAX;
    int off = name.size() > 5 ? std::atoi(std::string(name.substr(5)).c_str()) : 0;
    return base + off;
  }
  return make_error(ErrorCode::kInvalidArgument, "unknown signal \"{}\"", text);
}

Result<Runtime::Loaded> Runtime::load(const std::string& id) {
  TRY(StateDir::validate_id(id));
  StateDir dir(options_.root, id);
  State s = TRY(dir.load());
  return Loaded{s, current_status(s, dir)};
}

Result<void> Runtime::start(const std::string& id) {
  auto [s, status] = TRY(load(id));
  if (status != Status::kCreated)
    return make_error(ErrorCode::kConflict, "container \"{}\" is {}, not created", id,
                      to_string(status));
  StateDir dir(options_.root, id);
  Fd pidfd = TRY(open_init(s));
  Fd fifo(::open(dir.fifo().c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fifo) return errno_error("open exec fifo");
  // The init is blocked opening the fifo for writing; our open lets it write one byte. Watch
  // its pidfd too, so an init that died does not leave us waiting forever.
  pollfd fds[2] = {{fifo.get(), POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
  for (;;) {
    int r = ::poll(fds, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("wait for container init");
    if (fds[0].revents & POLLIN) break;
    if (fds[1].revents)
      return make_error(ErrorCode::kIo, "container \"{}\" init exited before start", id);
  }
  char byte;
  if (::read(fifo.get(), &byte, 1) != 1) return errno_error("read exec fifo");
  ::unlink(dir.fifo().c_str());
  if (auto cfg = load_config(s.bundle)) {
    Json st = oci_state(s, Status::kRunning);
    // poststart failures are reported, but the container keeps running (spec: log a warning).
    if (auto r = run_hooks(cfg->hooks.poststart, st, "poststart"); !r)
      spdlog::warn("{}", r.error().message());
  }
  return {};
}

Result<Json> Runtime::state(const std::string& id) {
  auto [s, status] = TRY(load(id));
  return oci_state(s, status);
}

Result<void> Runtime::kill(const std::string& id, int sig, bool all) {
  auto [s, status] = TRY(load(id));
  if (status == Status::kStopped || status == Status::kCreating)
    return make_error(ErrorCode::kConflict, "container \"{}\" is {}: nothing to signal", id,
                      to_string(status));
  if (all) {
    Cgroup cg = TRY(Cgroup::from_json(s.cgroup));
    if (cg.enabled()) {
      for (pid_t pid : TRY(cg.pids())) ::kill(pid, sig);
      return {};
    }
  }
  Fd pidfd = TRY(open_init(s));
  return with_context(sys::pidfd_send_signal(pidfd.get(), sig), "kill " + id);
}

Result<void> Runtime::destroy(const State& s, const StateDir& dir) {
  Cgroup cg = TRY(Cgroup::from_json(s.cgroup));
  // Processes outside the init's pid namespace (shared or joined pid ns) survive the init.
  if (auto pids = cg.pids(); pids && !pids->empty()) {
    for (pid_t pid : *pids) ::kill(pid, SIGKILL);
  }
  TRY(cg.destroy());
  if (!s.poststop.empty()) {
    if (auto r = run_hooks(s.poststop, oci_state(s, Status::kStopped), "poststop"); !r)
      spdlog::warn("{}", r.error().message());
  }
  dir.remove();
  return {};
}

Result<void> Runtime::remove(const std::string& id, bool force) {
  auto [s, status] = TRY(load(id));
  StateDir dir(options_.root, id);
  if (status != Status::kStopped) {
    if (!force)
      return make_error(ErrorCode::kConflict,
                        "container \"{}\" is {}: stop it first or use delete --force", id,
                        to_string(status));
    if (auto pidfd = open_init(s)) {
      if (status == Status::kPaused) {
        if (auto cg = Cgroup::from_json(s.cgroup)) (void)cg->freeze(false);
      }
      TRY(sys::pidfd_send_signal(pidfd->get(), SIGKILL));
      if (!TRY(sys::pidfd_wait_exit(pidfd->get(), 10000)))
        return make_error(ErrorCode::kTimeout, "container \"{}\" did not die within 10s", id);
    }
  }
  return destroy(s, dir);
}

Result<std::vector<Json>> Runtime::list() {
  std::vector<Json> out;
  for (const auto& id : list_ids(options_.root)) {
    auto loaded = load(id);
    if (!loaded) continue;
    const State& s = loaded->state;
    out.push_back(Json{{"id", s.id},
                       {"pid", loaded->status == Status::kStopped ? 0 : s.pid},
                       {"status", std::string(to_string(loaded->status))},
                       {"bundle", s.bundle.string()},
                       {"rootfs", s.rootfs.string()},
                       {"created", s.created},
                       {"owner", "root"}});
  }
  return out;
}

Result<std::vector<pid_t>> Runtime::ps(const std::string& id) {
  auto [s, status] = TRY(load(id));
  Cgroup cg = TRY(Cgroup::from_json(s.cgroup));
  return cg.pids();
}

Result<void> Runtime::pause(const std::string& id) {
  auto [s, status] = TRY(load(id));
  if (status != Status::kRunning && status != Status::kCreated)
    return make_error(ErrorCode::kConflict,
                      "container \"{}\" is {}: only a running container "
                      "can be paused",
                      id, to_string(status));
  Cgroup cg = TRY(Cgroup::from_json(s.cgroup));
  return cg.freeze(true);
}

Result<void> Runtime::resume(const std::string& id) {
  auto [s, status] = TRY(load(id));
  if (status != Status::kPaused)
    return make_error(ErrorCode::kConflict, "container \"{}\" is {}, not paused", id,
                      to_string(status));
  Cgroup cg = TRY(Cgroup::from_json(s.cgroup));
  return cg.freeze(false);
}

Result<void> Runtime::update(const std::string& id, const Resources& r) {
  auto [s, status] = TRY(load(id));
  if (status == Status::kStopped)
    return make_error(ErrorCode::kConflict, "container \"{}\" is stopped", id);
  Cgroup cg = TRY(Cgroup::from_json(s.cgroup));
  return cg.apply(r);
}

Result<int> Runtime::exec(const std::string& id, const ExecOptions& o) {
  auto [s, status] = TRY(load(id));
  if (status != Status::kRunning)
    return make_error(ErrorCode::kConflict, "container \"{}\" is {}, not running", id,
                      to_string(status));
  Config c = TRY(load_config(s.bundle));
  Process p = TRY(exec_process(c, o));
  return exec_in_container(s, c, p, o);
}

}  // namespace vireo::container
