#include "monitor/monitor.h"

#include "base/process_io.h"

#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "monitor/json_text.h"
#include "monitor/process.h"

namespace vireo::monitor {

namespace {

constexpr size_t kMaxStdinBuffer = 64 * 1024;
constexpr int kDrainRounds = 4096;
constexpr size_t kTrimInterval = 256 * 1024;
constexpr int kForwardedSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

// Output is read through one static buffer: a large stack array would stay resident.
char g_read_buffer[16 * 1024];

std::string absolute(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char cwd[4096];
  if (!::getcwd(cwd, sizeof cwd)) return path;
  return std::string(cwd) + "/" + path;
}

void log_error(std::string_view what, const Error& e) {
  std::string line = "vireo-monitor: ";
  line.append(what);
  line += ": ";
  line += e.message();
  line += '\n';
  (void)!::write(2, line.data(), line.size());
}

Result<Fd> listen_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return make_error(ErrorCode::kInvalidArgument, "socket path too long: " + path);
  std::memcpy(addr.sun_path, path.data(), path.size());
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket");
  ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return errno_error("bind " + path);
  if (::chmod(path.c_str(), 0600) != 0) return errno_error("chmod " + path);
  if (::listen(fd.get(), 1) != 0) return errno_error("listen " + path);
  return fd;
}

// The message of the last error the runtime logged (JSON lines with "msg") after offset.
std::string runtime_error_message(const std::string& log_path, size_t offset) {
  std::string text = read_small_file(log_path, 1024 * 1024);
  if (offset > text.size()) offset = 0;
  std::string_view rest = std::string_view(text).substr(offset);
  std::string last;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    if (auto msg = find_json_string(line, "msg"); msg && !msg->empty()) last = *msg;
  }
  return last;
}

size_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
}

}  // namespace

Result<void> detach(Options& o) {
  o.state_dir = absolute(o.state_dir);
  o.bundle = absolute(o.bundle);
  o.runtime_root = absolute(o.runtime_root);
  o.netns = absolute(o.netns);
  if (o.runtime.find('/') != std::string::npos) o.runtime = absolute(o.runtime);
  struct stat st {};
  if (::stat(o.state_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return make_error(ErrorCode::kInvalidArgument,
                      "--state-dir " + o.state_dir + ": not a directory");
  // The ready fd must survive the stdio set-up below and reach no child.
  if (o.ready_fd >= 0 && o.ready_fd <= 2) {
    int moved = ::fcntl(o.ready_fd, F_DUPFD_CLOEXEC, 3);
    if (moved < 0) return errno_error("--ready-fd");
    o.ready_fd = moved;
  }
  if (o.ready_fd >= 0 && ::fcntl(o.ready_fd, F_SETFD, FD_CLOEXEC) != 0)
    return errno_error("--ready-fd");

  pid_t child = ::fork();
  if (child < 0) return errno_error("fork");
  if (child > 0) ::_exit(0);
  if (::setsid() < 0) return errno_error("setsid");
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return errno_error("PR_SET_CHILD_SUBREAPER");
  if (::chdir("/") != 0) return errno_error("chdir /");

  Fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null) return errno_error("open /dev/null");
  std::string log_path = o.state_dir + "/monitor.log";
  Fd log(::open(log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
  if (!log) return errno_error("open " + log_path);
  if (::dup2(null.get(), 0) < 0 || ::dup2(null.get(), 1) < 0 || ::dup2(log.get(), 2) < 0)
    return errno_error("dup2");
  null.reset();
  log.reset();
  // Nothing the caller left open (its sockets, its pipes) may stay open in a long-lived process.
  if (o.ready_fd < 0) {
    ::close_range(3, ~0U, 0);
  } else {
    if (o.ready_fd > 3) ::close_range(3, static_cast<unsigned>(o.ready_fd) - 1, 0);
    ::close_range(static_cast<unsigned>(o.ready_fd) + 1, ~0U, 0);
  }
  return write_file_atomic(o.state_dir, "monitor.pid", std::to_string(::getpid()) + "\n");
}

void report_ready(Options& o, std::string_view json_line) {
  if (o.ready_fd < 0) return;
  std::string line(json_line);
  line += '\n';
  (void)!::write(o.ready_fd, line.data(), line.size());
  ::close(o.ready_fd);
  o.ready_fd = -1;
}

std::string ready_error_line(std::string_view message) {
  std::string s = "{\"error\":\"";
  append_json_escaped(s, message);
  s += "\"}";
  return s;
}

Result<std::unique_ptr<Monitor>> Monitor::create(const Options& o) {
  std::unique_ptr<Monitor> m(new Monitor(o));
  m->epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!m->epoll_) return errno_error("epoll_create1");
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  for (int s : kForwardedSignals) sigaddset(&set, s);
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return errno_error("sigprocmask");
  m->signals_ = Fd(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!m->signals_) return errno_error("signalfd");
  TRY(m->watch(m->signals_.get(), EPOLLIN));
  m->log_ =
      TRY(with_context(LogWriter::create(o.state_dir, {o.log_max_size, o.log_max_files}), "logs"));
  m->state_dir_ = Fd(::open(o.state_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!m->state_dir_) return errno_error("open " + o.state_dir);
  // A record of an earlier run in the same directory would read as this container's exit.
  for (const char* stale : {"exit.json", "exit.json.tmp", "container.pid"}) {
    std::string path = o.state_dir + "/" + stale;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error("remove " + path);
  }
  m->attach_ = TRY(AttachServer::create(m->socket_path("attach.sock"), m->epoll_.get(), m.get()));
  return m;
}

Monitor::~Monitor() = default;

std::string Monitor::socket_path(std::string_view name) const {
  std::string path = o_.state_dir + "/" + std::string(name);
  if (path.size() < sizeof(sockaddr_un::sun_path)) return path;
  // Too long for sockaddr_un: the same file through this process's fd of the state directory.
  return "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(state_dir_.get()) + "/" +
         std::string(name);
}

Result<void> Monitor::watch(int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return errno_error("epoll_ctl");
  return {};
}

std::vector<std::string> Monitor::runtime_argv(const std::vector<std::string>& args,
                                               RuntimeLog log) const {
  std::vector<std::string> argv{o_.runtime};
  if (!o_.runtime_root.empty()) {
    argv.push_back("--root");
    argv.push_back(o_.runtime_root);
  }
  if (log == RuntimeLog::kKeep) {
    for (std::string a : {std::string("--log"), o_.state_dir + "/runtime.log",
                          std::string("--log-format"), std::string("json")})
      argv.push_back(std::move(a));
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

Result<void> Monitor::run_runtime(const std::vector<std::string>& args, int in, int out, int err,
                                  std::string_view what) {
  std::string log_path = o_.state_dir + "/runtime.log";
  size_t log_offset = file_size(log_path);
  std::vector<std::string> argv = runtime_argv(args, RuntimeLog::kKeep);
  pid_t pid = TRY(with_context(spawn(argv, in, out, err), what));
  int status = TRY(with_context(wait_for(pid), what));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  std::string message = runtime_error_message(log_path, log_offset);
  if (message.empty()) message = describe_status(o_.runtime, status);
  return make_error(ErrorCode::kIo, std::string(what) + ": " + message);
}

Result<Fd> Monitor::receive_pty(int listener) {
  Fd conn(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn)
    return make_error(ErrorCode::kInvalidArgument,
                      "the runtime sent no terminal: --tty needs process.terminal in config.json");
  return receive_fd(conn.get());
}

Result<void> Monitor::create_container() {
  Fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null) return errno_error("open /dev/null");
  std::string console_path;
  Fd console;
  // The container's ends of its stdio pipes; closed here once the runtime has passed them on.
  Fd in_r, out_w, err_w;
  if (o_.terminal == Terminal::kTty) {
    console_path = socket_path("console.sock");
    console = TRY(with_context(listen_unix(console_path), "console socket"));
  } else {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return errno_error("pipe");
    out_ = Fd(p[0]);
    out_w = Fd(p[1]);
    if (::pipe2(p, O_CLOEXEC) != 0) return errno_error("pipe");
    err_ = Fd(p[0]);
    err_w = Fd(p[1]);
    TRY(set_nonblocking(out_.get()));
    TRY(set_nonblocking(err_.get()));
    if (o_.stdin_mode == Stdin::kOpen) {
      if (::pipe2(p, O_CLOEXEC) != 0) return errno_error("pipe");
      in_r = Fd(p[0]);
      stdin_ = Fd(p[1]);
      TRY(set_nonblocking(stdin_.get()));
    }
  }
  std::string pid_file = o_.state_dir + "/container.pid";
  ::unlink(pid_file.c_str());
  std::vector<std::string> args{"create", "--bundle", o_.bundle, "--pid-file", pid_file};
  if (console) {
    args.push_back("--console-socket");
    args.push_back(console_path);
  }
  args.push_back(o_.id);
  auto created = run_runtime(args, in_r ? in_r.get() : null.get(), out_w ? out_w.get() : null.get(),
                             err_w ? err_w.get() : null.get(), "create");
  if (console) ::unlink(console_path.c_str());
  TRY(std::move(created));
  if (console) pty_ = TRY(receive_pty(console.get()));
  std::string text = read_small_file(pid_file);
  long pid = std::strtol(text.c_str(), nullptr, 10);
  if (pid <= 0)
    return make_error(ErrorCode::kIo, "create: the runtime wrote no pid to " + pid_file);
  pid_ = static_cast<pid_t>(pid);
  return {};
}

void Monitor::delete_container(bool force) {
  Fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  int n = null ? null.get() : 2;
  auto deleted = force ? run_runtime({"delete", "--force", o_.id}, n, n, 2, "delete --force")
                       : run_runtime({"delete", o_.id}, n, n, 2, "delete");
  if (deleted) return;
  log_error("runtime", deleted.error());
  if (!force) delete_container(true);
}

Result<void> Monitor::start() {
  auto started = start_container();
  if (started) return {};
  proxy_.reset();
  if (owns_container_) delete_container(true);
  reap();
  return started;
}

Result<void> Monitor::start_container() {
  // An ID the runtime already knows belongs to another container: fail without deleting it.
  Fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null) return errno_error("open /dev/null");
  pid_t probe = TRY(with_context(spawn(runtime_argv({"state", o_.id}, RuntimeLog::kDiscard),
                                       null.get(), null.get(), null.get()),
                                 "state"));
  int probe_status = TRY(with_context(wait_for(probe), "state"));
  if (WIFEXITED(probe_status) && WEXITSTATUS(probe_status) == 0)
    return make_error(ErrorCode::kAlreadyExists,
                      "create: the runtime already has a container " + o_.id);
  // Ports are bound before the container exists: a port taken on the host fails the start
  // with nothing to undo.
  if (!o_.publish.empty()) proxy_ = TRY(PortProxy::create(o_.netns, o_.publish, epoll_.get()));
  owns_container_ = true;
  TRY(create_container());
  TRY(run_runtime({"start", o_.id}, 2, 2, 2, "start"));
  started_at_ = now_realtime();
  oom_ = find_oom_counter(pid_);
  if (oom_) oom_kills_at_start_ = read_oom_kills(*oom_);
  if (out_) TRY(watch(out_.get(), EPOLLIN));
  if (err_) TRY(watch(err_.get(), EPOLLIN));
  if (pty_) TRY(watch(pty_.get(), EPOLLIN));
  if (stdin_) TRY(watch(stdin_.get(), 0));
  report_ready(o_, "{\"pid\":" + std::to_string(pid_) + "}");
  return {};
}

int Monitor::run() {
  reap();  // the init may have exited before the loop began
  epoll_event events[16];
  while (!exited_) {
    int n = ::epoll_wait(epoll_.get(), events, 16, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      // Cannot happen with a valid epoll fd; still record a true exit rather than none.
      log_error("epoll_wait", Error::from_errno(errno, "epoll_wait"));
      if (::waitpid(pid_, &status_, 0) == pid_) exited_ = true;
      break;
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      uint32_t ev = events[i].events;
      if (fd == signals_.get()) {
        handle_signals();
      } else if (out_ && fd == out_.get()) {
        read_output(out_, Stream::kStdout);
      } else if (err_ && fd == err_.get()) {
        read_output(err_, Stream::kStderr);
      } else if (pty_ && fd == pty_.get()) {
        if (ev & EPOLLOUT) write_stdin();
        if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_output(pty_, Stream::kStdout);
      } else if (stdin_ && fd == stdin_.get()) {
        // ERR: the container closed its stdin; level-triggered, so drop the pipe now.
        if (ev & (EPOLLERR | EPOLLHUP)) {
          close_stdin_pipe();
        } else {
          write_stdin();
        }
      } else if (attach_->owns(fd)) {
        attach_->handle(fd, ev);
      } else if (proxy_ && proxy_->owns(fd)) {
        proxy_->handle(fd, ev);
      }
    }
  }
  finish();
  return 0;
}

void Monitor::handle_signals() {
  signalfd_siginfo info;
  while (::read(signals_.get(), &info, sizeof info) == sizeof info) {
    int sig = static_cast<int>(info.ssi_signo);
    if (sig == SIGCHLD) {
      reap();
    } else if (pid_ > 0 && !exited_) {
      ::kill(pid_, sig);
    }
  }
}

void Monitor::reap() {
  int status = 0;
  pid_t p;
  while ((p = ::waitpid(-1, &status, WNOHANG)) > 0) {
    if (p == pid_ && pid_ > 0) {
      status_ = status;
      exited_ = true;
    }
  }
}

bool Monitor::read_output(Fd& fd, Stream stream, int max_rounds) {
  for (int rounds = 0; fd && rounds < max_rounds; ++rounds) {
    ssize_t n = ::read(fd.get(), g_read_buffer, sizeof g_read_buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    if (n <= 0) {  // end of file; EIO on a pty whose other side is closed
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd.get(), nullptr);
      fd.reset();
      return false;
    }
    std::string_view data(g_read_buffer, static_cast<size_t>(n));
    if (auto logged = log_->write(stream, data, now_realtime()); !logged && !log_failed_) {
      log_failed_ = true;  // reported once; the container keeps running
      log_error("log", logged.error());
    }
    attach_->broadcast(stream, data);
    // After a burst, hand the pages its buffers used back to the kernel: free heap chunks in
    // the middle of the heap otherwise stay resident.
    output_since_trim_ += static_cast<size_t>(n);
    if (output_since_trim_ >= kTrimInterval) {
      ::malloc_trim(0);
      output_since_trim_ = 0;
    }
  }
  return true;
}

void Monitor::on_stdin(std::string_view data) {
  if (!o_.accepts_input()) return;
  if (o_.terminal == Terminal::kPipes && (!stdin_ || stdin_close_requested_)) return;
  stdin_buf_.append(data);
  write_stdin();
}

void Monitor::write_stdin() {
  bool tty = o_.terminal == Terminal::kTty;
  int target = tty ? pty_.get() : stdin_.get();
  while (!stdin_buf_.empty() && target >= 0) {
    ssize_t n = ::write(target, stdin_buf_.data(), stdin_buf_.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) {  // the container closed its stdin
      stdin_buf_.clear();
      if (!tty) close_stdin_pipe();
      break;
    }
    stdin_buf_.erase(0, static_cast<size_t>(n));
  }
  if (target < 0) stdin_buf_.clear();
  if (stdin_buf_.empty() && stdin_close_requested_ && !tty) close_stdin_pipe();
  if (stdin_buf_.capacity() > kMaxStdinBuffer && stdin_buf_.empty()) stdin_buf_.shrink_to_fit();
  attach_->pause_input(stdin_buf_.size() >= kMaxStdinBuffer);
  update_stdin_interest();
}

void Monitor::update_stdin_interest() {
  bool tty = o_.terminal == Terminal::kTty;
  Fd& target = tty ? pty_ : stdin_;
  if (!target) return;
  epoll_event ev{};
  ev.events = (stdin_buf_.empty() ? 0u : EPOLLOUT) | (tty ? EPOLLIN : 0u);
  ev.data.fd = target.get();
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, target.get(), &ev);
}

void Monitor::close_stdin_pipe() {
  if (!stdin_) return;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, stdin_.get(), nullptr);
  stdin_.reset();
  stdin_buf_.clear();
}

void Monitor::on_resize(uint16_t rows, uint16_t cols) {
  if (!pty_) return;
  winsize ws{};
  ws.ws_row = rows;
  ws.ws_col = cols;
  ::ioctl(pty_.get(), TIOCSWINSZ, &ws);
}

void Monitor::on_close_stdin() {
  if (o_.terminal == Terminal::kTty) return;
  stdin_close_requested_ = true;
  if (stdin_buf_.empty()) close_stdin_pipe();
}

std::string Monitor::on_publish(std::string_view specs) {
  if (o_.netns.empty()) return "the container has no network namespace of its own (--netns)";
  std::vector<PublishedPort> ports;
  while (!specs.empty()) {
    auto nl = specs.find('\n');
    std::string_view line = specs.substr(0, nl);
    specs = nl == std::string_view::npos ? std::string_view() : specs.substr(nl + 1);
    if (line.empty()) continue;
    auto port = parse_publish(std::string(line));
    if (!port) return port.error().message();
    ports.push_back(*port);
  }
  if (!proxy_) {
    auto proxy = PortProxy::create(o_.netns, ports, epoll_.get());
    if (!proxy) return proxy.error().message();
    proxy_ = std::move(*proxy);
    return "";
  }
  auto applied = proxy_->set_ports(ports);
  return applied ? "" : applied.error().message();
}

void Monitor::finish() {
  // The published ports go with the container, before its exit is recorded.
  proxy_.reset();
  // What the container wrote before it exited is still in the pipes (or the pty). Bounded, in
  // case a process outside the container's pid namespace holds a pipe and keeps writing.
  read_output(out_, Stream::kStdout, kDrainRounds);
  read_output(err_, Stream::kStderr, kDrainRounds);
  read_output(pty_, Stream::kStdout, kDrainRounds);
  if (auto flushed = log_->flush(now_realtime()); !flushed) log_error("log", flushed.error());
  bool oom_killed = oom_ && read_oom_kills(*oom_) > oom_kills_at_start_;
  delete_container(false);
  std::string json = exit_json(now_realtime(), oom_killed);
  if (auto written = write_file_atomic(o_.state_dir, "exit.json", json + "\n"); !written)
    log_error("exit.json", written.error());
  attach_->close_all(json);
  reap();
}

std::string Monitor::exit_json(const timespec& finished, bool oom_killed) const {
  int code = WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  std::string s = "{\"exit_code\":" + std::to_string(code) + ",\"signal\":";
  s += WIFSIGNALED(status_) ? std::to_string(WTERMSIG(status_)) : "null";
  s += ",\"oom_killed\":";
  s += oom_killed ? "true" : "false";
  s += ",\"started_at\":\"";
  append_rfc3339_nano(s, started_at_);
  s += "\",\"finished_at\":\"";
  append_rfc3339_nano(s, finished);
  s += "\"}";
  return s;
}

}  // namespace vireo::monitor
