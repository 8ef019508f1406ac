#include "container/init.h"
#include "base/subprocess.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "container/hooks.h"
#include "container/linux_sys.h"
#include "container/process_setup.h"
#include "container/rootfs.h"
#include "container/seccomp.h"

namespace vireo::container {

Result<void> send_sync(int fd, SyncMsg msg, std::string_view text) {
  std::string buf(1, static_cast<char>(msg));
  buf.append(text);
  if (::send(fd, buf.data(), buf.size(), MSG_NOSIGNAL) < 0) return errno_error("sync send");
  return {};
}

Result<SyncMessage> recv_sync(int fd) {
  char buf[8192];
  for (;;) {
    auto [n, passed] = TRY(sys::recv_with_fd(fd, buf, sizeof buf));
    if (n == 0) return make_error(ErrorCode::kIo, "container init exited unexpectedly");
    return SyncMessage{static_cast<SyncMsg>(buf[0]), std::string(buf + 1, n - 1),
                       std::move(passed)};
  }
}

Result<void> expect_sync(int fd, SyncMsg want) {
  auto m = TRY(recv_sync(fd));
  if (m.msg == SyncMsg::kError) return make_error(ErrorCode::kIo, "{}", m.text);
  if (m.msg != want)
    return make_error(ErrorCode::kInternal, "sync: expected '{}', got '{}'",
                      static_cast<char>(want), static_cast<char>(m.msg));
  return {};
}

Result<void> hand_over_listener(int sync_fd, const Fd& listener) {
  if (!listener) return {};
  TRY(sys::send_fd(sync_fd, listener.get(),
                   std::string(1, static_cast<char>(SyncMsg::kSeccompFd))));
  return expect_sync(sync_fd, SyncMsg::kSeccompDone);
}

Result<void> forward_listener(int sync_fd, const Seccomp& seccomp, Fd listener, pid_t pid,
                              const Json& state) {
  if (!listener) return make_error(ErrorCode::kInternal, "sync: seccomp message without an fd");
  Json process_state{{"ociVersion", "1.2.0"},
                     {"fds", Json::array({"seccompFd"})},
                     {"pid", pid},
                     {"metadata", seccomp.listener_metadata},
                     {"state", state}};
  auto sent = [&]() -> Result<void> {
    Fd agent = TRY(sys::connect_unix(seccomp.listener_path));
    return sys::send_fd(agent.get(), listener.get(), process_state.dump());
  }();
  if (!sent) {
    Error e = std::move(sent.error()).with_context("linux.seccomp.listenerPath");
    (void)send_sync(sync_fd, SyncMsg::kError, e.message());
    return std::unexpected(std::move(e));
  }
  return send_sync(sync_fd, SyncMsg::kSeccompDone);
}

namespace {

Result<void> join_and_unshare(const InitContext& ctx) {
  const Config& c = *ctx.config;
  if (ctx.new_user_ns) {
    // The parent has written the id maps; become the container's root for the setup.
    if (::setresgid(0, 0, 0) != 0 || ::setresuid(0, 0, 0) != 0)
      return errno_error("become root in the user namespace");
  }
  for (const auto& [type, fd] : ctx.join_fds) {
    if (::setns(fd, clone_flag(type)) != 0)
      return errno_error(
          fmt::format("join {} namespace {}", to_string(type), c.linux.find_namespace(type)->path));
  }
  // After the parent moved us into the container's cgroup, so that it becomes the root.
  if (ctx.new_cgroup_ns && ::unshare(CLONE_NEWCGROUP) != 0)
    return errno_error("create cgroup namespace");
  if (!c.hostname.empty() && ::sethostname(c.hostname.data(), c.hostname.size()) != 0)
    return errno_error("set hostname");
  if (!c.domainname.empty() && ::setdomainname(c.domainname.data(), c.domainname.size()) != 0)
    return errno_error("set domainname");
  return {};
}

Result<void> build_filesystem(const InitContext& ctx) {
  const Config& c = *ctx.config;
  const Namespace* mnt = c.linux.find_namespace(NamespaceType::kMount);
  bool new_mount_ns = mnt && mnt->path.empty();
  if (new_mount_ns) {
    RootfsOptions o{ctx.new_user_ns, ctx.new_cgroup_ns, ctx.cgroup};
    TRY(prepare_rootfs(c, o));
  }
  if (!c.hooks.prestart.empty() || !c.hooks.create_runtime.empty()) {
    TRY(send_sync(ctx.sync_fd, SyncMsg::kRunHooks));
    TRY(expect_sync(ctx.sync_fd, SyncMsg::kHooksDone));
  }
  if (!c.hooks.create_container.empty()) {
    Json state{{"ociVersion", "1.2.0"},
               {"status", "creating"},
               {"pid", ::getpid()},
               {"bundle", ::get_current_dir_name()},
               {"annotations", c.annotations}};
    TRY(run_hooks(c.hooks.create_container, state, "createContainer"));
  }
  if (new_mount_ns) {
    TRY(enter_rootfs(c, ctx.no_pivot));
    TRY(finish_rootfs(c));
  }
  return {};
}

// Everything that can fail before the container is reported created.
Result<std::string> prepare(const InitContext& ctx, std::unique_ptr<SeccompFilter>& filter) {
  TRY(expect_sync(ctx.sync_fd, SyncMsg::kGo));
  TRY(join_and_unshare(ctx));
  TRY(build_filesystem(ctx));
  const Config& c = *ctx.config;
  const Process& p = *c.process;
  if (p.terminal) {
    if (ctx.console_fd < 0)
      return make_error(ErrorCode::kInvalidArgument,
                        "process.terminal is set: pass --console-socket");
    TRY(setup_console(p, ctx.console_fd));
  }
  TRY(set_oom_score_adj(p));
  TRY(set_rlimits(p));
  if (c.linux.personality && ::personality(*c.linux.personality) < 0)
    return errno_error("linux.personality");
  if (c.linux.seccomp) filter = TRY(SeccompFilter::build(*c.linux.seccomp));
  // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we still have it.
  if (filter && !p.no_new_privileges) TRY(hand_over_listener(ctx.sync_fd, TRY(filter->load())));
  TRY(switch_user(p));
  if (p.no_new_privileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return errno_error("set no_new_privs");
  // Close every inherited fd before the cwd is entered, so that no path through
  // /proc/self/fd can name a host directory (the leaked-fd class of escape).
  sys::close_fds_from(3 + ctx.preserve_fds, ctx.sync_fd, ctx.fifo_fd);
  TRY(enter_cwd(p));
  std::string exe = TRY(find_executable(p));
  // A listener fd travels over the sync socket, which closes at "ready": load such a filter now.
  if (filter && p.no_new_privileges && filter->notifies()) {
    TRY(hand_over_listener(ctx.sync_fd, TRY(filter->load())));
    filter.reset();
  }
  return exe;
}

Result<void> wait_for_start(const InitContext& ctx) {
  if (ctx.fifo_fd < 0) return {};
  // Blocks until `start` opens the fifo for reading.
  int fd = ::open(sys::fd_path(ctx.fifo_fd).c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno_error("open exec fifo (is /proc mounted in the container?)");
  TRY(sys::write_all(fd, "0"));
  ::close(fd);
  ::close(ctx.fifo_fd);
  return {};
}

}  // namespace

void run_container_init(const InitContext& ctx) {
  // `run` blocks the signals it forwards; the container must start with a clean mask.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  std::unique_ptr<SeccompFilter> filter;
  auto exe = prepare(ctx, filter);
  if (!exe) {
    (void)send_sync(ctx.sync_fd, SyncMsg::kError, exe.error().message());
    ::_exit(1);
  }
  (void)send_sync(ctx.sync_fd, SyncMsg::kReady);
  ::close(ctx.sync_fd);
  const Config& c = *ctx.config;
  auto started = wait_for_start(ctx);
  if (started && !c.hooks.start_container.empty()) {
    Json state{{"ociVersion", "1.2.0"},
               {"status", "running"},
               {"pid", ::getpid()},
               {"annotations", c.annotations}};
    started = run_hooks(c.hooks.start_container, state, "startContainer");
  }
  if (started && filter && c.process->no_new_privileges) {
    auto listener = filter->load();
    if (!listener) started = std::unexpected(std::move(listener.error()));
  }
  if (!started) {
    fmt::print(stderr, "vireo-runtime: {}\n", started.error().message());
    ::_exit(127);
  }
  auto argv = c_strings(c.process->args);
  auto envp = c_strings(c.process->env);
  ::execve(exe->c_str(), argv.data(), envp.data());
  fmt::print(stderr, "vireo-runtime: exec {}: {}\n", *exe, std::strerror(errno));
  ::_exit(127);
}

}  // namespace vireo::container
