// vireo ct attach and vireo ct run -i/-t (foreground): see container_attach.h.
#include "cli/container_attach.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <mutex>
#include <optional>

#include "api/operation.h"
#include "base/fd.h"
#include "base/strings.h"
#include "cli/terminal.h"
#include "monitor/frames.h"

namespace vireo::cli {

namespace {

using monitor::FrameType;
using monitor::kFrameHeader;
using monitor::make_frame;

constexpr char kCtrlP = 0x10, kCtrlQ = 0x11;

// What the stream's thread tells the CLI's.
struct Shared {
  std::mutex mu;
  bool closed = false;
  std::string close_text;  // the error, when the stream ended without an exit frame
  std::optional<std::string> exit_json;
  Fd wake_r, wake_w;
};

enum class End { kExited, kDetached, kSignalled };
struct Outcome {
  End end = End::kExited;
  int exit_code = 0;
};

struct AttachMode {
  bool input = false;  // relay the CLI's stdin
  bool tty = false;    // the container has a terminal (resizes)
  bool raw = false;    // the CLI's stdin is a terminal too: raw mode and detach keys
  // An exec'd process: no detach keys, and signals end the CLI (the process is killed when the
  // stream closes) instead of going to the container.
  bool exec = false;
};

class Attachment {
 public:
  // Opens the stream at target (an attach route); the output flows from then on.
  static Result<std::unique_ptr<Attachment>> open(Context& ctx, const std::string& name,
                                                  const std::string& target, AttachMode mode) {
    std::unique_ptr<Attachment> a(new Attachment(ctx, name, mode));
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return errno_error("pipe");
    a->shared_->wake_r = Fd(p[0]);
    a->shared_->wake_w = Fd(p[1]);
    auto* c = TRY(ctx.client());
    a->stream_ = TRY(c->open_stream(
        target, {.on_message = [s = a->shared_](std::string_view m) { on_message(*s, m); },
                 .on_closed =
                     [s = a->shared_](Result<std::string> reason) {
                       std::lock_guard lock(s->mu);
                       s->closed = true;
                       if (!reason) s->close_text = reason.error().message();
                       (void)!::write(s->wake_w.get(), "x", 1);
                     }}));
    return a;
  }

  // Relays until the exit frame, a detach or a signal that ends the CLI.
  Result<Outcome> relay() {
    std::optional<RawTerminal> raw;
    if (mode_.raw) raw.emplace();
    if (mode_.tty) send_size();
    bool stdin_open = mode_.input;
    bool held_ctrl_p = false;
    char buf[16384];
    for (;;) {
      {
        std::lock_guard lock(shared_->mu);
        if (shared_->closed) break;
      }
      pollfd fds[3] = {{shared_->wake_r.get(), POLLIN, 0},
                       {signals_.fd(), POLLIN, 0},
                       {stdin_open ? STDIN_FILENO : -1, POLLIN, 0}};
      if (::poll(fds, 3, -1) < 0) {
        if (errno == EINTR) continue;
        return errno_error("poll");
      }
      if (fds[1].revents & POLLIN) {
        if (auto sig = take_signal(); sig) {
          stream_->close();
          return Outcome{.end = End::kSignalled, .exit_code = 128 + *sig};
        }
      }
      if (!(fds[2].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        stdin_open = false;
        stream_->send(make_frame(FrameType::kCloseStdin, {}));
        continue;
      }
      std::string input;
      bool detach = false;
      for (ssize_t i = 0; i < n && !detach; ++i) {
        char ch = buf[i];
        if (!mode_.raw || mode_.exec) {
          input += ch;
        } else if (held_ctrl_p) {
          held_ctrl_p = false;
          if (ch == kCtrlQ) {
            detach = true;
          } else {
            input += kCtrlP;
            if (ch == kCtrlP)
              held_ctrl_p = true;
            else
              input += ch;
          }
        } else if (ch == kCtrlP) {
          held_ctrl_p = true;
        } else {
          input += ch;
        }
      }
      if (!input.empty()) stream_->send(make_frame(FrameType::kStdin, input));
      if (detach) {
        close_and_wait();
        return Outcome{.end = End::kDetached};
      }
    }
    std::lock_guard lock(shared_->mu);
    if (!shared_->exit_json)
      return make_error(
          ErrorCode::kUnavailable, "attach to {} ended: {}", name_,
          shared_->close_text.empty() ? "vireod closed the stream" : shared_->close_text);
    auto exit = parse_json(*shared_->exit_json);
    int code = exit && exit->is_object() ? exit->value("exit_code", 1) : 1;
    return Outcome{.end = End::kExited, .exit_code = code};
  }

 private:
  Attachment(Context& ctx, std::string name, AttachMode mode)
      : ctx_(ctx), name_(std::move(name)), mode_(mode), shared_(std::make_shared<Shared>()) {}

  // On the stream's thread: output to our streams, the exit frame kept.
  static void on_message(Shared& s, std::string_view m) {
    while (m.size() >= kFrameHeader) {
      uint32_t len = monitor::frame_length(m);
      if (m.size() - kFrameHeader < len) return;
      std::string_view payload = m.substr(kFrameHeader, len);
      switch (static_cast<FrameType>(m[0])) {
        case FrameType::kStdout:
          write_all(STDOUT_FILENO, payload);
          break;
        case FrameType::kStderr:
          write_all(STDERR_FILENO, payload);
          break;
        case FrameType::kExit: {
          std::lock_guard lock(s.mu);
          s.exit_json = std::string(payload);
          break;
        }
        default:
          break;
      }
      m.remove_prefix(kFrameHeader + len);
    }
  }

  void send_size() {
    winsize ws{};
    if (::ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0) return;
    std::string payload(4, '\0');
    payload[0] = static_cast<char>(ws.ws_row >> 8);
    payload[1] = static_cast<char>(ws.ws_row);
    payload[2] = static_cast<char>(ws.ws_col >> 8);
    payload[3] = static_cast<char>(ws.ws_col);
    stream_->send(make_frame(FrameType::kResize, payload));
  }

  // Handles the pending signals; returns the one that ends the CLI, if any. SIGWINCH resizes;
  // without a terminal the others go to the container (as docker's sig-proxy).
  std::optional<int> take_signal() {
    signalfd_siginfo info;
    while (::read(signals_.fd(), &info, sizeof info) == sizeof info) {
      int sig = static_cast<int>(info.ssi_signo);
      if (sig == SIGWINCH) {
        if (mode_.tty) send_size();
        continue;
      }
      if (mode_.raw || mode_.exec) return sig;
      auto c = ctx_.client();
      auto path = container_path(name_, "/kill");
      Json body = {{"signal", sig}};
      if (c && path) (void)(*c)->request("POST", *path, &body);
    }
    return std::nullopt;
  }

  // A normal close, waited for a little so that the input sent before reaches the container.
  void close_and_wait() {
    stream_->close();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    for (;;) {
      {
        std::lock_guard lock(shared_->mu);
        if (shared_->closed) return;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return;
      pollfd p{shared_->wake_r.get(), POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(left.count()));
    }
  }

  Context& ctx_;
  std::string name_;
  AttachMode mode_;
  std::shared_ptr<Shared> shared_;
  BlockedSignals signals_;  // before the stream's thread starts
  std::unique_ptr<client::MessageStream> stream_;
};

Error not_a_tty() {
  return Error(ErrorCode::kInvalidArgument, "the input device is not a TTY");
}

AttachMode mode_for(const Json& config) {
  AttachMode m;
  m.tty = config.value("tty", false);
  m.input = config.value("stdin", false);
  m.raw = m.tty && m.input && ::isatty(STDIN_FILENO);
  return m;
}

Result<void> attach(Context& ctx, const std::string& name) {
  Json c = TRY(TRY(ctx.client())->request("GET", TRY(container_path(name)))).body;
  if (c.value("state", "") != "running")
    return make_error(ErrorCode::kConflict,
                      "container {} is not running: start it first (vireo ct start {})", name,
                      name);
  AttachMode mode = mode_for(c.value("config", Json::object()));
  if (mode.tty && mode.input && !mode.raw) return std::unexpected(not_a_tty());
  std::string target = TRY(container_path(name, "/attach")) + (mode.input ? "?stdin=1" : "");
  auto a = TRY(Attachment::open(ctx, name, target, mode));
  Outcome out = TRY(a->relay());
  if (out.end != End::kDetached) ctx.exit_code = out.exit_code;
  return {};
}

}  // namespace

Result<void> run_attached(Context& ctx, Json body, bool remove) {
  AttachMode mode = mode_for(body);
  if (mode.tty && !::isatty(STDIN_FILENO)) return std::unexpected(not_a_tty());
  body.erase("start");
  body.erase("wait");
  // The daemon removes it once it exited, also when the CLI detached before.
  if (remove) body["auto_remove"] = true;
  auto* c = TRY(ctx.client());
  Json created = TRY(c->request("POST", kContainers, &body)).body;
  std::string name = created.value("name", ""), id = created.value("id", "");
  auto cleanup = [&] {
    if (remove) (void)c->request("DELETE", kContainers + "/" + id + "?force=1");
  };
  // Attached before the start: nothing the container writes is missed.
  std::string target = TRY(container_path(name, "/attach")) + (mode.input ? "?stdin=1" : "");
  auto a = Attachment::open(ctx, name, target, mode);
  if (!a) {
    cleanup();
    return std::unexpected(a.error());
  }
  if (auto started = c->request("POST", TRY(container_path(name, "/start"))); !started) {
    a->reset();
    cleanup();
    return std::unexpected(started.error());
  }
  Outcome out = TRY((*a)->relay());
  a->reset();
  if (out.end == End::kDetached) return {};
  ctx.exit_code = out.exit_code;
  if (out.end != End::kExited || !remove) return {};
  // Gone once this returns, so that the next command does not see it.
  auto waited = c->request("POST", TRY(container_path(id, "/wait")));
  if (waited) (void)finish_operation(ctx, waited->body);
  (void)c->request("DELETE", TRY(container_path(id)));
  return {};
}

Result<void> exec_attached(Context& ctx, const std::string& name, const Json& request,
                           ExecStreams streams) {
  if (streams.tty && !::isatty(STDIN_FILENO)) return std::unexpected(not_a_tty());
  AttachMode mode{.input = streams.input,
                  .tty = streams.tty,
                  .raw = streams.tty && streams.input,
                  .exec = true};
  std::string target = TRY(container_path(name, "/exec/attach")) +
                       "?request=" + percent_encode(request.dump()) +
                       (mode.input ? "&stdin=1" : "") + (mode.tty ? "&tty=1" : "");
  auto a = TRY(Attachment::open(ctx, name, target, mode));
  Outcome out = TRY(a->relay());
  ctx.exit_code = out.exit_code;
  return {};
}

void add_attach_command(CLI::App* noun, Context& ctx) {
  static std::string name;
  auto* cmd = noun->add_subcommand(
      "attach", "Attach the terminal to a running container (detach: Ctrl-P Ctrl-Q)");
  cmd->add_option("name", name, "Container")->required();
  cmd->callback([&ctx] { ctx.outcome = attach(ctx, name); });
}

}  // namespace vireo::cli
