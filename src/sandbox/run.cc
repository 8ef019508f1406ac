#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "base/fd.h"
#include "base/file.h"
#include "base/json.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "container/cgroup.h"
#include "container/linux_sys.h"
#include "sandbox/app_store.h"
#include "sandbox/policy.h"
#include "sandbox/sandbox.h"
#include "sandbox/view.h"

namespace vireo::sandbox {

namespace csys = container::sys;

namespace {

constexpr int kSetupFailed = 125;

// Signals the sandbox passes on to the app. Those the terminal sends reach the app directly
// (it is in the terminal's foreground process group), so only signals sent with kill() are
// forwarded, or the app would get each Ctrl-C twice.
sigset_t forwarded_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT, SIGWINCH})
    sigaddset(&set, sig);
  return set;
}

bool sent_by_a_process(const siginfo_t& info) {
  return info.si_code == SI_USER || info.si_code == SI_TKILL || info.si_code == SI_QUEUE;
}

int shell_status(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Waits for main while forwarding signals to it; reaps every other child too (the sandbox's
// first process is pid 1 of its namespace and inherits orphans).
int supervise(pid_t main, const sigset_t& set) {
  for (;;) {
    siginfo_t info;
    int sig = ::sigwaitinfo(&set, &info);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      if (sent_by_a_process(info)) ::kill(main, sig);
      continue;
    }
    int status = 0;
    for (pid_t pid; (pid = ::waitpid(-1, &status, WNOHANG)) > 0;)
      if (pid == main) return shell_status(status);
  }
}

void report(int fd, const Error& e) {
  std::string line = e.message();
  (void)csys::write_all(fd, line);
}

Result<void> write_proc(pid_t pid, const char* file, const std::string& text) {
  std::string path = fmt::format("/proc/{}/{}", pid, file);
  Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return errno_error("open " + path);
  return with_context(csys::write_all(fd.get(), text), path);
}

// Root maps every id to itself, so files keep their owners; a user maps only itself (to root
// inside, so the set-up keeps its capabilities across exec of fuse-overlayfs).
Result<void> write_id_maps(pid_t pid, bool privileged, uid_t uid, gid_t gid) {
  if (privileged) {
    TRY(write_proc(pid, "uid_map", "0 0 4294967295\n"));
    return write_proc(pid, "gid_map", "0 0 4294967295\n");
  }
  TRY(write_proc(pid, "setgroups", "deny"));
  TRY(write_proc(pid, "uid_map", fmt::format("0 {} 1\n", uid)));
  return write_proc(pid, "gid_map", fmt::format("0 {} 1\n", gid));
}

// The app of an unprivileged user runs as that user again: a nested namespace maps the
// set-up's root back to the user's id, which also drops every capability.
Result<void> become_user_again(uid_t uid, gid_t gid) {
  if (::unshare(CLONE_NEWUSER) != 0) return errno_error("unshare the app's user namespace");
  TRY(write_proc(::getpid(), "setgroups", "deny"));
  TRY(write_proc(::getpid(), "uid_map", fmt::format("{} 0 1\n", uid)));
  TRY(write_proc(::getpid(), "gid_map", fmt::format("{} 0 1\n", gid)));
  return {};
}

// The app's own network namespace: its processes may send ICMP echo without raw sockets (the
// namespace is not the app's to grant CAP_NET_RAW in), as Docker and Podman allow.
void allow_ping() {
  Fd fd(::open("/proc/sys/net/ipv4/ping_group_range", O_WRONLY | O_CLOEXEC));
  if (fd) (void)csys::write_all(fd.get(), "0 2147483647");
}

Result<void> loopback_up() {
  Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return errno_error("socket");
  ifreq req{};
  std::snprintf(req.ifr_name, sizeof req.ifr_name, "lo");
  if (::ioctl(s.get(), SIOCGIFFLAGS, &req) != 0) return errno_error("get lo flags");
  req.ifr_flags |= IFF_UP;
  if (::ioctl(s.get(), SIOCSIFFLAGS, &req) != 0) return errno_error("bring lo up");
  return {};
}

// The script udhcpc runs with the lease: address, prefix and default route for eth0.
constexpr const char* kDhcpScript = R"(#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    ;;
esac
exit 0
)";

struct Launch {
  const SandboxSpec& spec;
  const ViewPlan& plan;
  bool new_net = false;
  std::string cwd;
};

[[noreturn]] void exec_app(const Launch& l, int go_fd, int err_fd, const sigset_t& set) {
  ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
  auto fail = [&](const Error& e, int code) {
    report(err_fd, e);
    ::_exit(code);
  };
  char go = 0;
  if (::read(go_fd, &go, 1) != 1) ::_exit(kSetupFailed);
  ::close(go_fd);
  uid_t uid = l.plan.kernel_overlay ? 0 : l.plan.uid;
  gid_t gid = l.plan.kernel_overlay ? 0 : l.plan.gid;
  if (!l.plan.kernel_overlay)
    if (auto r = become_user_again(uid, gid); !r) fail(r.error(), kSetupFailed);
  if (auto r = apply_policy(l.spec.profile, uid, gid); !r) fail(r.error(), kSetupFailed);
  if (::chdir(l.cwd.c_str()) != 0 && ::chdir(l.plan.home.c_str()) != 0) (void)::chdir("/");
  for (const auto& kv : l.spec.env) ::putenv(const_cast<char*>(kv.c_str()));
  auto argv = c_strings(l.spec.command);
  ::execvp(argv[0], argv.data());
  fail(Error::from_errno(errno, "run " + l.spec.command[0]), errno == ENOENT ? 127 : 126);
  ::_exit(127);
}

// Starts the app's process. Root's app gets its user namespace (every id mapped to itself) only
// now, after the view is built in a mount namespace it does not own: it can neither see the
// host's mounts nor undo the view's.
Result<pid_t> start_app(const Launch& l, int err_fd, const sigset_t& set) {
  int go[2];
  if (::pipe2(go, O_CLOEXEC) != 0) return errno_error("pipe");
  Fd go_read(go[0]), go_write(go[1]);
  auto app = csys::clone3(l.plan.kernel_overlay ? CLONE_NEWUSER : 0, nullptr);
  if (!app) return std::unexpected(app.error());
  if (*app == 0) {
    go_write.reset();
    exec_app(l, go_read.get(), err_fd, set);
  }
  go_read.reset();
  auto mapped = l.plan.kernel_overlay ? write_id_maps(*app, true, 0, 0) : Result<void>{};
  if (mapped) mapped = csys::write_all(go_write.get(), "g");
  if (!mapped) {
    ::kill(*app, SIGKILL);
    return std::unexpected(mapped.error());
  }
  return *app;
}

// The sandbox's first process: pid 1 of the new pid namespace.
std::string busybox() {
  std::string b = find_program("busybox");
  return b.empty() ? "/bin/busybox" : b;
}

// Gives the app's network namespace its interface: renamed eth0, up, and configured by DHCP.
// Runs in the sandbox's first process before the view hides the host's tools.
Result<void> configure_network(const Launch& l) {
  auto run = [](std::vector<std::string> argv) -> Result<void> {
    auto r = TRY(run_process(argv, {.timeout = std::chrono::seconds(20)}));
    if (!r.ok())
      return make_error(ErrorCode::kIo, "{}: {}", argv[0] == "ip" ? "ip " + argv[1] : argv[1],
                        std::string(trim(r.err.empty() ? r.out : r.err)));
    return {};
  };
  TRY(run({"ip", "link", "set", "dev", l.spec.net_iface, "name", "eth0"}));
  TRY(run({"ip", "link", "set", "dev", "eth0", "up"}));
  std::string script = l.plan.app.work + "/dhcp-script";
  TRY(write_file_atomic(script, kDhcpScript, 0755));
  return with_context(run({busybox(), "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T",
                           "1", "-s", script}),
                      "get an address by DHCP on the app's network");
}

// go_fd: wait for the caller's signal (id maps written, cgroup joined) first; -1: nothing to wait
// for (root without limits), which saves a hand-over between processes.
[[noreturn]] void sandbox_init(const Launch& l, int go_fd, int err_fd, const sigset_t& set) {
  char go = 0;
  if (go_fd >= 0 && ::read(go_fd, &go, 1) != 1) ::_exit(kSetupFailed);
  if (go_fd >= 0) ::close(go_fd);
  auto setup = [&]() -> Result<pid_t> {
    if (!l.spec.net_iface.empty()) TRY(configure_network(l));
    TRY(enter_view(l.plan));
    if (l.new_net) {
      TRY(loopback_up());
      allow_ping();
    }
    if (::sethostname(l.spec.name.data(), l.spec.name.size()) != 0)
      return errno_error("sethostname");
    return start_app(l, err_fd, set);
  };
  auto app = setup();
  if (!app) {
    report(err_fd, app.error());
    ::_exit(kSetupFailed);
  }
  ::close(err_fd);
  ::_exit(supervise(*app, set));
}

Result<Json> load_settings(const AppPaths& app) {
  struct stat st;
  if (::stat(app.settings.c_str(), &st) != 0) return Json::object();
  auto text = TRY(read_file(app.settings));
  auto j = parse_json(text);
  if (!j || !j->is_object())
    return make_error(ErrorCode::kInvalidArgument, "{} is not a JSON object; fix or remove it",
                      app.settings);
  return *j;
}

// Redirected paths: the defaults, those the app was given before, and the new ones (saved).
Result<std::vector<std::string>> redirected_paths(const SandboxSpec& spec, const AppPaths& app) {
  Json settings = TRY(load_settings(app));
  std::vector<std::string> paths = default_redirected_paths();
  std::vector<std::string> extra;
  if (settings.contains("redirect") && settings["redirect"].is_array())
    for (const auto& p : settings["redirect"])
      if (p.is_string()) extra.push_back(p.get<std::string>());
  for (const auto& p : spec.redirect) extra.push_back(TRY(checked_absolute_path(p, "--redirect")));
  for (const auto& p : extra) {
    auto checked = TRY(checked_absolute_path(p, "redirected path"));
    for (const char* bad : {"/", "/proc", "/dev", "/sys", "/tmp", "/run"})
      if (checked == bad)
        return make_error(ErrorCode::kInvalidArgument, "{} cannot be redirected", checked);
    for (const auto& q : paths)
      if (checked == q || checked.starts_with(q + "/") || q.starts_with(checked + "/"))
        return make_error(ErrorCode::kInvalidArgument, "{} overlaps the redirected path {}",
                          checked, q);
    paths.push_back(checked);
  }
  if (!spec.redirect.empty()) {
    std::vector<std::string> saved(paths.begin() + default_redirected_paths().size(), paths.end());
    settings["redirect"] = saved;
    TRY(make_dirs(app.app));
    TRY(write_file_atomic(app.settings, dump_json(settings, 2) + "\n"));
  }
  std::erase_if(paths, [](const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) != 0 || !S_ISDIR(st.st_mode);
  });
  return paths;
}

Result<ViewPlan> plan_for(const SandboxSpec& spec, const AppPaths& app) {
  ViewPlan plan;
  plan.app = app;
  plan.uid = ::getuid();
  plan.gid = ::getgid();
  plan.kernel_overlay = ::geteuid() == 0;
  plan.profile = spec.profile;
  plan.binds = spec.binds;
  plan.redirected = TRY(redirected_paths(spec, app));
  for (const auto& other : spec.with_apps) {
    auto paths = TRY(app_paths(other));
    if (other == spec.name)
      return make_error(ErrorCode::kInvalidArgument, "--with {}: that is the app itself", other);
    struct stat st;
    if (::stat(paths.store.c_str(), &st) != 0)
      return make_error(ErrorCode::kNotFound, "--with {}: that app has no store yet; run it once",
                        other);
    plan.extra_lower.push_back(paths.store);
  }
  if (!spec.package_files.empty()) plan.extra_lower.push_back(spec.package_files);
  plan.home = TRY(checked_absolute_path(home_directory(), "the home folder ($HOME)"));
  for (auto& b : plan.binds) {
    b.source = TRY(checked_absolute_path(b.source, "bind source"));
    b.target = TRY(checked_absolute_path(b.target, "bind target"));
  }
  return plan;
}

std::string boot_id() {
  auto id = read_file("/proc/sys/kernel/random/boot_id");
  return id ? std::string(trim(*id)) : std::string();
}

void open_up(const std::filesystem::path& dir) {
  if (::chmod(dir.c_str(), 0700) != 0) return;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_directory(ec) && !e.is_symlink(ec)) open_up(e.path());
}

// The overlays are mounted "volatile": nothing is synced when the sandbox ends, which would
// otherwise flush the whole host filesystem at every exit (tens of milliseconds). The kernel
// leaves a marker that must be cleared before the next mount; a store last used before the host
// went down may miss its final writes, which is said once.
Result<void> clear_volatile_markers(const AppPaths& app) {
  std::error_code ec;
  bool dirty = false;
  for (const auto& entry : std::filesystem::directory_iterator(app.work, ec)) {
    std::string work = entry.path().string() + "/work";
    // overlayfs makes its work folders mode 000; their owner may still open them up to clean.
    if (::geteuid() != 0) open_up(work);
    // The marker is exactly incompat/volatile/dirty: three calls, no tree walk (start-up cost).
    if (::unlink((work + "/incompat/volatile/dirty").c_str()) == 0) dirty = true;
    for (const char* leaf : {"/incompat/volatile/dirty", "/incompat/volatile", "/incompat"}) {
      if (::rmdir((work + leaf).c_str()) == 0) {
        dirty = true;
      } else if (errno != ENOENT && errno != ENOTDIR) {
        return errno_error("clear the overlay marker " + work + leaf);
      }
    }
  }
  std::string last = read_file(app.app + "/.boot_id").value_or("");
  std::string now = boot_id();
  if (dirty && !last.empty() && last != now)
    std::fprintf(stderr,
                 "vireo app: %s was running when the host went down; its last writes may be "
                 "missing (see vireo app store ls %s)\n",
                 app.name.c_str(), app.name.c_str());
  if (last != now) TRY(write_file_atomic(app.app + "/.boot_id", now));
  return {};
}

Result<void> move_into_netns(const std::string& iface, pid_t pid) {
  auto r = TRY(run_process({"ip", "link", "set", "dev", iface, "netns", std::to_string(pid)},
                           {.timeout = std::chrono::seconds(10)}));
  if (!r.ok())
    return make_error(ErrorCode::kIo, "move {} into the app's network namespace: {}", iface,
                      std::string(trim(r.err)));
  return {};
}

// A memory limit needs a cgroup the caller may write: root's, or none (with a warning).
Result<std::optional<container::Cgroup>> make_cgroup(const SandboxSpec& spec) {
  if (!spec.memory_limit) return std::nullopt;
  if (::geteuid() != 0) {
    std::fprintf(stderr,
                 "vireo app: --memory needs root (no delegated cgroup for this user); running "
                 "without a memory limit\n");
    return std::nullopt;
  }
  auto cg = TRY(container::Cgroup::resolve(fmt::format("/vireo-apps/{}-{}", spec.name, ::getpid()),
                                           spec.name, false));
  TRY_CTX(cg.create(), "create the app's cgroup");
  container::Resources r;
  r.memory_limit = static_cast<int64_t>(*spec.memory_limit);
  if (auto applied = cg.apply(r); !applied) {
    (void)cg.destroy();
    return std::unexpected(applied.error());
  }
  return cg;
}

}  // namespace

Result<int> run_sandbox(const SandboxSpec& spec) {
  if (spec.command.empty())
    return make_error(ErrorCode::kInvalidArgument, "usage: vireo app run [OPTIONS] -- CMD [ARGS]");
  auto app = TRY(app_paths(spec.name));
  ViewPlan plan = TRY(plan_for(spec, app));
  TRY_CTX(prepare_store(plan), "app {}", spec.name);
  Fd lock = TRY(lock_app(app));
  TRY(clear_volatile_markers(app));
  Launch launch{spec, plan};
  if (!spec.net_iface.empty() && !plan.kernel_overlay)
    return make_error(ErrorCode::kPermissionDenied,
                      "an app on a Vireo network needs root (a veth pair and a network port)");
  launch.new_net =
      !spec.net_iface.empty() ||
      spec.net.value_or(spec.profile == Profile::kStrict ? NetMode::kNone : NetMode::kHost) ==
          NetMode::kNone;
  char cwd[4096];
  launch.cwd = ::getcwd(cwd, sizeof cwd) ? cwd : "/";

  auto cgroup = TRY(make_cgroup(spec));
  int go[2], err[2];
  if (::pipe2(go, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return errno_error("pipe");
  Fd go_read(go[0]), go_write(go[1]), err_read(err[0]), err_write(err[1]);
  sigset_t set = forwarded_signals(), old;
  ::sigprocmask(SIG_BLOCK, &set, &old);
  uint64_t flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
                   (launch.new_net ? CLONE_NEWNET : 0) | (plan.kernel_overlay ? 0 : CLONE_NEWUSER);
  bool needs_go = !plan.kernel_overlay || cgroup || !spec.net_iface.empty();
  auto pid = csys::clone3(flags, nullptr);
  if (pid && *pid == 0) {
    go_write.reset();
    err_read.reset();
    sandbox_init(launch, needs_go ? go_read.get() : -1, err_write.get(), set);
  }
  auto finish = [&](Result<int> r) -> Result<int> {
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    if (cgroup) (void)cgroup->destroy();
    return r;
  };
  if (!pid) return finish(std::unexpected(Error(pid.error()).with_context("start the sandbox")));
  go_read.reset();
  err_write.reset();
  auto started = [&]() -> Result<void> {
    if (!plan.kernel_overlay) TRY(write_id_maps(*pid, false, plan.uid, plan.gid));
    if (cgroup) TRY(cgroup->add_process(*pid));
    if (!spec.net_iface.empty()) TRY(move_into_netns(spec.net_iface, *pid));
    return needs_go ? csys::write_all(go_write.get(), "g") : Result<void>{};
  }();
  if (!started) ::kill(*pid, SIGKILL);
  go_write.reset();
  std::string message;
  char buf[1024];
  for (ssize_t n; (n = ::read(err_read.get(), buf, sizeof buf)) != 0;)
    if (n > 0) message.append(buf, n);
  int status = supervise(*pid, set);
  if (!started) return finish(std::unexpected(started.error()));
  if (!message.empty() && status == kSetupFailed)
    return finish(make_error(ErrorCode::kIo, "app {}: {}", spec.name, message));
  // The app itself could not be executed: say why, and exit as a shell would (126/127).
  if (!message.empty()) std::fprintf(stderr, "vireo app: %s\n", message.c_str());
  return finish(status);
}

}  // namespace vireo::sandbox
