// Interactive exec (see exec_session.h) and Engine::exec_interactive.
#include "containers/exec_session.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "base/file.h"
#include "base/line_server.h"
#include "base/process_io.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "containers/engine.h"
#include "containers/engine_impl.h"

namespace vireo::containers {

namespace {

// How long the runtime may take to pass the terminal.
constexpr auto kTerminalWait = std::chrono::seconds(30);

// A pipe: {read end, write end}, close-on-exec.
Result<std::pair<Fd, Fd>> make_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return errno_error("pipe");
  return std::pair{Fd(p[0]), Fd(p[1])};
}

// Waits until fd is readable; false when the runtime ended first (or the wait timed out).
bool readable_before_exit(int fd, int pidfd, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p[2] = {{fd, POLLIN, 0}, {pidfd, POLLIN, 0}};
    int n = ::poll(p, 2, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (p[0].revents) return true;
    if (p[1].revents) return false;
  }
}

// The pty master the runtime sends over the console socket (as vireo-monitor receives it).
Result<Fd> receive_terminal(int listener, int pidfd) {
  const auto deadline = std::chrono::steady_clock::now() + kTerminalWait;
  if (!readable_before_exit(listener, pidfd, deadline))
    return make_error(ErrorCode::kIo, "the runtime sent no terminal");
  Fd conn(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn) return errno_error("console socket: accept");
  if (!readable_before_exit(conn.get(), pidfd, deadline))
    return make_error(ErrorCode::kIo, "the runtime sent no terminal");
  return receive_fd(conn.get());
}

// What the runtime wrote to fd so far (its error, after it failed).
std::string drain(int fd) {
  std::string out;
  char buf[4096];
  for (ssize_t n; out.size() < 65536 && (n = ::read(fd, buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<size_t>(n));
  return std::string(trim(out));
}

}  // namespace

Result<std::unique_ptr<ExecSession>> ExecSession::start(const std::vector<std::string>& runtime,
                                                        const std::string& id,
                                                        const ExecRequest& request,
                                                        ExecTerminal terminal, ExecInput input) {
  std::unique_ptr<ExecSession> s(new ExecSession());
  // A short path: socket addresses are limited to 107 bytes.
  std::string tmpl = (std::filesystem::temp_directory_path() / "vireo-exec-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) return errno_error("mkdtemp " + tmpl);
  s->dir_ = tmpl;
  const bool tty = terminal == ExecTerminal::kTty;
  std::vector<std::string> argv = runtime;
  argv.push_back("exec");
  Fd console;
  if (tty) {
    console = TRY(listen_unix_socket(s->dir_ / "console.sock"));
    argv.insert(argv.end(), {"--tty", "--console-socket", (s->dir_ / "console.sock").string()});
  }
  argv.insert(argv.end(), {"--pid-file", (s->dir_ / "exec.pid").string()});
  append_exec_args(argv, id, request);

  Fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null) return errno_error("open /dev/null");
  // The runtime's ends, closed here once it runs.
  Fd in_r, out_w;
  auto [err_r, err_w] = TRY(make_pipe());
  s->err_ = std::move(err_r);
  if (!tty) {
    auto [o_r, o_w] = TRY(make_pipe());
    s->out_ = std::move(o_r);
    out_w = std::move(o_w);
    if (input == ExecInput::kOpen) {
      auto [i_r, i_w] = TRY(make_pipe());
      in_r = std::move(i_r);
      s->in_ = std::move(i_w);
    }
  }
  s->pid_ = TRY(spawn_with_stdio(argv, in_r ? in_r.get() : null.get(),
                                 out_w ? out_w.get() : null.get(), err_w.get(),
                                 /*new_session=*/true));
  in_r.reset();
  out_w.reset();
  err_w.reset();
  s->pidfd_ = Fd(pidfd_open(s->pid_));
  if (!s->pidfd_) {
    auto e = errno_error("pidfd_open");
    s->kill();
    ::waitpid(s->pid_, nullptr, 0);
    s->exit_code_ = 0;
    return e;
  }
  for (int fd : {s->in_.get(), s->out_.get(), s->err_.get()})
    if (fd >= 0) TRY(set_nonblocking(fd));
  if (tty) {
    auto master = receive_terminal(console.get(), s->pidfd_.get());
    if (!master) {
      s->kill();
      std::string why = drain(s->err_.get());
      return make_error(ErrorCode::kIo, "exec: {}", why.empty() ? master.error().message() : why);
    }
    s->pty_ = std::move(*master);
  }
  return s;
}

ExecSession::~ExecSession() {
  if (pid_ > 0 && !exit_code_) {
    kill();
    siginfo_t si{};
    ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &si, WEXITED);
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

void ExecSession::resize(uint16_t rows, uint16_t cols) {
  if (!pty_) return;
  winsize ws{.ws_row = rows, .ws_col = cols, .ws_xpixel = 0, .ws_ypixel = 0};
  ::ioctl(pty_.get(), TIOCSWINSZ, &ws);
}

std::optional<int> ExecSession::exit_code() {
  if (exit_code_ || !pidfd_) return exit_code_;
  siginfo_t si{};
  if (::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &si, WEXITED | WNOHANG) != 0 ||
      si.si_pid == 0)
    return std::nullopt;
  exit_code_ = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
  return exit_code_;
}

void ExecSession::kill() {
  if (exit_code_) return;
  // The pid file names the process once it runs. Its pid is not reused before the runtime
  // reaps it, and then the runtime exits by itself.
  auto text = read_file(dir_ / "exec.pid");
  long pid = text ? std::strtol(text->c_str(), nullptr, 10) : 0;
  if (pid > 0) {
    Fd target(pidfd_open(static_cast<pid_t>(pid)));
    if (target) ::syscall(SYS_pidfd_send_signal, target.get(), SIGKILL, nullptr, 0);
    return;
  }
  if (pidfd_) ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
}

Result<std::unique_ptr<ExecSession>> Engine::exec_interactive(const std::string& name,
                                                              const ExecRequest& request,
                                                              ExecTerminal terminal,
                                                              ExecInput input) {
  Container c = TRY(impl_->running(name));
  auto s = ExecSession::start({impl_->o.runtime, "--root", impl_->runtime_root.string()}, c.id,
                              request, terminal, input);
  if (!s)
    return make_error(s.error().code(), "exec in container {}: {}", c.name, s.error().message());
  return s;
}

}  // namespace vireo::containers
