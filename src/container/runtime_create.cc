// create and run: everything is validated first, then each step that leaves something behind
// (state dir, fifo, cgroup, init process) registers its undo, so a failure leaves nothing.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/file.h"
#include "base/log.h"
#include "base/rollback.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "base/time.h"
#include "container/cgroup.h"
#include "container/hooks.h"
#include "container/init.h"
#include "container/linux_sys.h"
#include "container/runtime.h"

namespace vireo::container {

namespace {

namespace fs = std::filesystem;

// Order in which the init joins namespaces: the user namespace first (it grants the rights for
// the rest), the mount namespace last (it changes path lookups).
int join_order(NamespaceType t) {
  if (t == NamespaceType::kUser) return 0;
  if (t == NamespaceType::kMount) return 2;
  return 1;
}

struct Namespaces {
  uint64_t clone_flags = 0;
  std::vector<std::pair<NamespaceType, int>> join;  // fds owned by fds
  std::vector<Fd> fds;
};

// A child cloned into a new time namespace is already inside it, when the offsets can no
// longer be set: unshare it for our children instead, and set the offsets before the first.
Result<void> unshare_time_namespace(const std::map<std::string, TimeOffset>& offsets) {
  if (::unshare(CLONE_NEWTIME) != 0) return errno_error("create time namespace");
  if (offsets.empty()) return {};
  std::string text;
  for (const auto& [clock, o] : offsets)
    text += fmt::format("{} {} {}\n", clock, o.secs, o.nanosecs);
  Fd fd(::open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC));
  if (!fd) return errno_error("open /proc/self/timens_offsets");
  return with_context(sys::write_all(fd.get(), text), "linux.timeOffsets");
}

// New namespaces become clone flags; joined pid and time namespaces are entered by this process
// (they only apply to its children); the others are joined by the init.
Result<Namespaces> prepare_namespaces(const Config& c) {
  Namespaces ns;
  for (const auto& n : c.linux.namespaces) {
    if (n.path.empty() && n.type == NamespaceType::kTime) {
      TRY(unshare_time_namespace(c.linux.time_offsets));
      continue;
    }
    if (n.path.empty()) {
      if (n.type != NamespaceType::kCgroup)
        ns.clone_flags |= static_cast<uint64_t>(clone_flag(n.type));
      continue;
    }
    Fd fd(::open(n.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return errno_error(fmt::format("open {} namespace {}", to_string(n.type), n.path));
    if (n.type == NamespaceType::kPid || n.type == NamespaceType::kTime) {
      if (::setns(fd.get(), clone_flag(n.type)) != 0)
        return errno_error(fmt::format("join {} namespace {}", to_string(n.type), n.path));
      continue;
    }
    ns.join.emplace_back(n.type, fd.get());
    ns.fds.push_back(std::move(fd));
  }
  std::stable_sort(ns.join.begin(), ns.join.end(), [](const auto& a, const auto& b) {
    return join_order(a.first) < join_order(b.first);
  });
  return ns;
}

Result<void> write_id_map(pid_t pid, const char* file, const std::vector<IdMapping>& maps) {
  std::string text;
  for (const auto& m : maps) text += fmt::format("{} {} {}\n", m.container_id, m.host_id, m.size);
  Fd fd(::open(fmt::format("/proc/{}/{}", pid, file).c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("open {}", file));
  return with_context(sys::write_all(fd.get(), text), file);
}

bool maps_only_own_id(const std::vector<IdMapping>& maps, uint32_t own) {
  return maps.size() == 1 && maps[0].host_id == own && maps[0].size == 1;
}

// newuidmap/newgidmap (setuid, from the uidmap package) write ranges /etc/subuid grants.
Result<void> write_id_map_helper(pid_t pid, const char* helper,
                                 const std::vector<IdMapping>& maps) {
  std::string path = find_program(helper);
  if (path.empty())
    return make_error(ErrorCode::kUnavailable,
                      "rootless: mapping ids other than your own needs {} (package uidmap) and "
                      "/etc/subuid and /etc/subgid entries",
                      helper);
  std::vector<std::string> argv = {path, std::to_string(pid)};
  for (const auto& m : maps) {
    argv.push_back(std::to_string(m.container_id));
    argv.push_back(std::to_string(m.host_id));
    argv.push_back(std::to_string(m.size));
  }
  auto out = TRY(run_process(argv));
  if (!out.ok()) return make_error(ErrorCode::kPermissionDenied, "{}: {}", helper, trim(out.err));
  return {};
}

// Root writes any map; an unprivileged user may map only its own id (after giving up
// setgroups for the gid map) and needs the setuid helpers for more.
Result<void> write_id_maps(pid_t pid, const Linux& l) {
  if (::geteuid() == 0) {
    TRY(write_id_map(pid, "uid_map", l.uid_mappings));
    return write_id_map(pid, "gid_map", l.gid_mappings);
  }
  if (maps_only_own_id(l.uid_mappings, ::geteuid()))
    TRY(write_id_map(pid, "uid_map", l.uid_mappings));
  else
    TRY(write_id_map_helper(pid, "newuidmap", l.uid_mappings));
  if (!maps_only_own_id(l.gid_mappings, ::getegid()))
    return write_id_map_helper(pid, "newgidmap", l.gid_mappings);
  Fd setgroups(::open(fmt::format("/proc/{}/setgroups", pid).c_str(), O_WRONLY | O_CLOEXEC));
  if (!setgroups) return errno_error("open setgroups");
  TRY_CTX(sys::write_all(setgroups.get(), "deny"), "setgroups");
  return write_id_map(pid, "gid_map", l.gid_mappings);
}

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, __WALL) < 0 && errno == EINTR) {
  }
}

Result<void> check_supported(const Config& c) {
  if (!c.process)
    return make_error(ErrorCode::kInvalidArgument,
                      "config.json: process: required to create a container");
  return {};
}

// An unprivileged user (rootless) may not be able to create cgroups; that is fine as long as
// the container asks for no limits, as with runc.
Result<void> run_without_cgroup(Error failed, const Config& c) {
  int err = failed.sys_errno();
  bool denied = err == EACCES || err == EPERM || err == EROFS;
  if (::geteuid() == 0 || !denied) return std::unexpected(std::move(failed));
  if (c.linux.resources)
    return std::unexpected(std::move(failed).with_context(
        "rootless: linux.resources needs a cgroup this user may write (a delegated cgroup v2 "
        "subtree); remove the limits or delegate one"));
  spdlog::debug("rootless: running without a cgroup ({})", failed.message());
  return {};
}

}  // namespace

Result<void> Runtime::spawn_init(const Config& c, const CreateOptions& o, const StateDir& dir,
                                 Cgroup& cg, State& state) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return errno_error("socketpair");
  Fd parent_sock(sv[0]), child_sock(sv[1]);
  Fd fifo(::open(dir.fifo().c_str(), O_PATH | O_CLOEXEC));
  if (!fifo) return errno_error("open exec fifo");
  Fd console;
  if (!o.console_socket.empty()) console = TRY(sys::connect_unix(o.console_socket));
  Namespaces ns = TRY(prepare_namespaces(c));
  if (::chdir(state.bundle.c_str()) != 0) return errno_error("chdir to the bundle");
  const Namespace* user = c.linux.find_namespace(NamespaceType::kUser);
  const Namespace* cgroup_ns = c.linux.find_namespace(NamespaceType::kCgroup);
  InitContext ctx{&c,
                  &cg,
                  child_sock.get(),
                  fifo.get(),
                  console.get(),
                  o.no_pivot,
                  o.preserve_fds,
                  ns.join,
                  user && user->path.empty(),
                  cgroup_ns && cgroup_ns->path.empty()};
  int cg_fd = TRY(cg.unified_fd());
  Fd cg_fd_owner(cg_fd);
  int pidfd = -1;
  pid_t pid = TRY(sys::clone3(ns.clone_flags, &pidfd, cg_fd));
  if (pid == 0) {
    ::close(parent_sock.get());
    run_container_init(ctx);
  }
  Fd pidfd_owner(pidfd);
  child_sock.reset();
  Rollback undo;
  undo.add([pid] { kill_and_reap(pid); });
  if (ctx.new_user_ns) {
    TRY(write_id_maps(pid, c.linux));
  }
  if (cg_fd < 0) TRY(cg.add_process(pid));
  TRY(send_sync(parent_sock.get(), SyncMsg::kGo));
  state.pid = pid;
  for (;;) {
    auto m = TRY(recv_sync(parent_sock.get()));
    if (m.msg == SyncMsg::kReady) break;
    if (m.msg == SyncMsg::kError) return make_error(ErrorCode::kIo, "{}", m.text);
    if (m.msg == SyncMsg::kSeccompFd) {
      TRY(forward_listener(parent_sock.get(), *c.linux.seccomp, std::move(m.fd), pid,
                           oci_state(state, Status::kCreating)));
      continue;
    }
    if (m.msg != SyncMsg::kRunHooks) return make_error(ErrorCode::kInternal, "sync: bad message");
    Json st = oci_state(state, Status::kCreating);
    auto hooks = run_hooks(c.hooks.prestart, st, "prestart");
    if (hooks) hooks = run_hooks(c.hooks.create_runtime, st, "createRuntime");
    if (!hooks) {
      (void)send_sync(parent_sock.get(), SyncMsg::kError, hooks.error().message());
      return std::unexpected(std::move(hooks.error()));
    }
    TRY(send_sync(parent_sock.get(), SyncMsg::kHooksDone));
  }
  state.start_time = TRY(sys::proc_stat(pid)).start_time;
  undo.commit();
  return {};
}

Result<void> Runtime::create(const std::string& id, const CreateOptions& o) {
  TRY(StateDir::validate_id(id));
  fs::path bundle = fs::absolute(o.bundle).lexically_normal();
  // Resolved now: spawning the init changes into the bundle directory.
  fs::path pid_file = o.pid_file.empty() ? fs::path() : fs::absolute(o.pid_file);
  std::vector<std::string> warnings;
  Config c = TRY(load_config(bundle, &warnings));
  for (const auto& w : warnings) spdlog::warn("{}", w);
  TRY(check_supported(c));
  Cgroup cg = TRY(Cgroup::resolve(c.linux.cgroups_path, id, options_.systemd_cgroup));

  StateDir dir(options_.root, id);
  TRY(dir.create());
  Rollback undo;
  undo.add([&dir] { dir.remove(); });
  State s;
  s.id = id;
  s.bundle = bundle;
  s.rootfs = c.rootfs;
  s.created = now_timestamp();
  s.annotations = c.annotations;
  s.cgroup = cg.to_json();
  s.poststop = c.hooks.poststop;
  s.systemd_cgroup = options_.systemd_cgroup;
  TRY(dir.save(s));
  // 0622 after the umask: the init may run as any uid and must be able to open it for writing.
  if (::mkfifo(dir.fifo().c_str(), 0622) != 0 || ::chmod(dir.fifo().c_str(), 0622) != 0)
    return errno_error("create exec fifo");
  if (auto made = cg.create(); !made) {
    TRY(run_without_cgroup(std::move(made.error()), c));
    (void)cg.destroy();
    cg.disable();
    s.cgroup = cg.to_json();
  }
  undo.add([&cg] { (void)cg.destroy(); });
  if (c.linux.resources) TRY(cg.apply(*c.linux.resources));
  TRY(spawn_init(c, o, dir, cg, s));
  undo.add([pid = s.pid] { kill_and_reap(pid); });
  s.saved_status = Status::kCreated;
  TRY(dir.save(s));
  if (!pid_file.empty()) {
    TRY_CTX(write_file_atomic(pid_file, std::to_string(s.pid)), "--pid-file");
  }
  undo.commit();
  return {};
}

Result<int> Runtime::run(const std::string& id, const CreateOptions& o, bool detach) {
  sigset_t forward;
  sigemptyset(&forward);
  for (int sig : {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH})
    sigaddset(&forward, sig);
  sigset_t old;
  if (!detach) ::sigprocmask(SIG_BLOCK, &forward, &old);
  TRY(create(id, o));
  if (auto r = start(id); !r) {
    (void)remove(id, true);
    return std::unexpected(std::move(r.error()));
  }
  if (detach) return 0;
  pid_t pid = TRY(load(id)).state.pid;
  int code = sys::wait_forwarding_signals(pid, forward);
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  TRY(remove(id, true));
  return code;
}

}  // namespace vireo::container
