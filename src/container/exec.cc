#include "container/exec.h"
#include "base/subprocess.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "base/file.h"
#include "container/cgroup.h"
#include "container/config_parse.h"
#include "container/init.h"
#include "container/linux_sys.h"
#include "container/process_setup.h"
#include "container/seccomp.h"

namespace vireo::container {

namespace {

struct NsName {
  const char* file;
  NamespaceType type;
};
// Join order: user first (it grants the rights for the rest), mount last (it changes lookups).
constexpr NsName kJoinOrder[] = {
    {"user", NamespaceType::kUser},     {"ipc", NamespaceType::kIpc},
    {"uts", NamespaceType::kUts},       {"net", NamespaceType::kNetwork},
    {"cgroup", NamespaceType::kCgroup}, {"mnt", NamespaceType::kMount},
};

bool same_namespace(pid_t pid, const char* file) {
  struct stat a, b;
  return ::stat(fmt::format("/proc/{}/ns/{}", pid, file).c_str(), &a) == 0 &&
         ::stat(fmt::format("/proc/self/ns/{}", file).c_str(), &b) == 0 && a.st_ino == b.st_ino &&
         a.st_dev == b.st_dev;
}

// Namespaces of pid that differ from ours, opened in join order.
Result<std::vector<std::pair<NamespaceType, Fd>>> open_namespaces(pid_t pid) {
  std::vector<std::pair<NamespaceType, Fd>> out;
  for (const auto& ns : kJoinOrder) {
    if (same_namespace(pid, ns.file)) continue;
    Fd fd(::open(fmt::format("/proc/{}/ns/{}", pid, ns.file).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return errno_error(fmt::format("open {} namespace of the container", ns.file));
    out.emplace_back(ns.type, std::move(fd));
  }
  return out;
}

// pid and time namespaces apply to children only: entering them here puts the child inside.
Result<void> enter_for_children(pid_t pid) {
  for (const char* file : {"pid", "time"}) {
    if (same_namespace(pid, file)) continue;
    Fd fd(::open(fmt::format("/proc/{}/ns/{}", pid, file).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd && errno == ENOENT) continue;
    if (!fd || ::setns(fd.get(), 0) != 0)
      return errno_error(fmt::format("join {} namespace of the container", file));
  }
  return {};
}

struct ExecChild {
  const Process* process;
  const Config* config;
  const std::vector<std::pair<NamespaceType, Fd>>* namespaces;
  int sync_fd;
  int console_fd;
  int preserve_fds;
};

Result<std::string> prepare_exec(const ExecChild& c, std::unique_ptr<SeccompFilter>& filter) {
  TRY(expect_sync(c.sync_fd, SyncMsg::kGo));  // the parent has put us in the cgroup
  for (const auto& [type, fd] : *c.namespaces)
    if (::setns(fd.get(), clone_flag(type)) != 0)
      return errno_error(fmt::format("join {} namespace", to_string(type)));
  const Process& p = *c.process;
  if (p.terminal) {
    if (c.console_fd < 0)
      return make_error(ErrorCode::kInvalidArgument, "--tty needs --console-socket");
    TRY(setup_console(p, c.console_fd));
  }
  TRY(set_oom_score_adj(p));
  TRY(set_rlimits(p));
  if (c.config->linux.seccomp) filter = TRY(SeccompFilter::build(*c.config->linux.seccomp));
  if (filter && !p.no_new_privileges) TRY(hand_over_listener(c.sync_fd, TRY(filter->load())));
  TRY(switch_user(p));
  if (p.no_new_privileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return errno_error("set no_new_privs");
  sys::close_fds_from(3 + c.preserve_fds, c.sync_fd);
  TRY(enter_cwd(p));
  std::string exe = TRY(find_executable(p));
  if (filter && p.no_new_privileges) TRY(hand_over_listener(c.sync_fd, TRY(filter->load())));
  return exe;
}

[[noreturn]] void run_exec_child(const ExecChild& c) {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  std::unique_ptr<SeccompFilter> filter;
  auto exe = prepare_exec(c, filter);
  if (exe) {
    auto argv = c_strings(c.process->args);
    auto envp = c_strings(c.process->env);
    ::execve(exe->c_str(), argv.data(), envp.data());
    exe = std::unexpected(Error::from_errno(errno, "exec " + *exe));
  }
  // The sync socket is close-on-exec: EOF tells the parent exec worked, a message that it did not.
  (void)send_sync(c.sync_fd, SyncMsg::kError, exe.error().message());
  ::_exit(127);
}

}  // namespace

Result<Process> exec_process(const Config& config, const ExecOptions& o) {
  if (!o.process_file.empty()) {
    std::string text = TRY(read_file(o.process_file));
    Json j = TRY(with_context(parse_json(text), "--process"));
    JsonFields f("process.json", nullptr);
    return parse_process(f, j, "process", nullptr);
  }
  if (!config.process)
    return make_error(ErrorCode::kInvalidArgument, "config.json has no process to start from");
  if (o.args.empty())
    return make_error(ErrorCode::kInvalidArgument, "exec: give --process FILE or -- ARGS");
  Process p = *config.process;
  p.args = o.args;
  p.terminal = o.tty;
  p.env.insert(p.env.end(), o.env.begin(), o.env.end());
  if (!o.cwd.empty()) p.cwd = o.cwd;
  if (o.user) {
    p.user.uid = o.user->first;
    p.user.gid = o.user->second;
    p.user.additional_gids.clear();
  }
  return p;
}

Result<int> exec_in_container(const State& s, const Config& config, const Process& p,
                              const ExecOptions& o) {
  auto namespaces = TRY(open_namespaces(s.pid));
  // A container's own user namespace (rootless) owns its pid namespace: the runtime joins it
  // first, or it may not enter the pid namespace for its child. The child inherits it.
  if (::geteuid() != 0 && !namespaces.empty() && namespaces.front().first == NamespaceType::kUser) {
    if (::setns(namespaces.front().second.get(), CLONE_NEWUSER) != 0)
      return errno_error("join user namespace of the container");
    namespaces.erase(namespaces.begin());
  }
  TRY(enter_for_children(s.pid));
  Cgroup cg = TRY(Cgroup::from_json(s.cgroup));
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return errno_error("socketpair");
  Fd parent_sock(sv[0]), child_sock(sv[1]);
  Fd console;
  if (!o.console_socket.empty()) console = TRY(sys::connect_unix(o.console_socket));
  sigset_t forward, old;
  sigemptyset(&forward);
  for (int sig : {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH})
    sigaddset(&forward, sig);
  if (!o.detach) ::sigprocmask(SIG_BLOCK, &forward, &old);
  int cg_fd = TRY(cg.unified_fd());
  Fd cg_owner(cg_fd);
  ExecChild child{&p, &config, &namespaces, child_sock.get(), console.get(), o.preserve_fds};
  pid_t pid = TRY(sys::clone3(0, nullptr, cg_fd));
  if (pid == 0) run_exec_child(child);
  child_sock.reset();
  if (cg_fd < 0) {
    if (auto r = cg.add_process(pid); !r) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return std::unexpected(std::move(r.error()));
    }
  }
  TRY(send_sync(parent_sock.get(), SyncMsg::kGo));
  auto msg = recv_sync(parent_sock.get());
  if (msg && msg->msg == SyncMsg::kSeccompFd) {
    Json state = {{"ociVersion", "1.2.0"},
                  {"id", s.id},
                  {"status", "running"},
                  {"pid", s.pid},
                  {"bundle", s.bundle.string()}};
    auto sent =
        forward_listener(parent_sock.get(), *config.linux.seccomp, std::move(msg->fd), pid, state);
    msg = sent ? recv_sync(parent_sock.get()) : Result<SyncMessage>(std::unexpected(sent.error()));
    if (!sent) {
      ::waitpid(pid, nullptr, 0);
      return std::unexpected(std::move(sent.error()));
    }
  }
  if (msg && msg->msg == SyncMsg::kError) {
    ::waitpid(pid, nullptr, 0);
    return make_error(ErrorCode::kIo, "{}", msg->text);
  }
  if (!o.pid_file.empty())
    TRY_CTX(write_file_atomic(o.pid_file, std::to_string(pid)), "--pid-file");
  if (o.detach) return 0;
  int code = sys::wait_forwarding_signals(pid, forward);
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  return code;
}

}  // namespace vireo::container
