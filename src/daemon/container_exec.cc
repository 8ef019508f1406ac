#include "daemon/container_exec.h"

#include <poll.h>
#include <signal.h>

#include <mutex>
#include <optional>

#include "base/fd.h"
#include "base/json.h"
#include "containers/engine.h"
#include "daemon/stream_session.h"

namespace vireo::daemon {

namespace {

using containers::ExecSession;
using server::MessageKind;
using server::Request;
using server::WebSocket;

// Client input not yet written to the process above which the client is read no further.
constexpr size_t kMaxPendingInput = 1 << 20;
// Output not yet written to the client above which the process is read no further.
constexpr size_t kMaxPendingOutput = 1 << 20;
// After the exit, output is drained until its ends close, or until none came for this long (a
// process left in the background may hold them).
constexpr int kDrainGraceMs = 500;
struct Options {
  std::string name;
  containers::ExecRequest request;
  containers::ExecTerminal terminal = containers::ExecTerminal::kPipes;
  containers::ExecInput input = containers::ExecInput::kNone;
};

class ExecAttachSession final : public StreamSession {
 public:
  explicit ExecAttachSession(Options o) : o_(std::move(o)) {}

 private:
  // Client → process, on the io thread: whole frames; stdin ones only when input is open.
  void on_message(std::string message) override {
    const bool input = o_.input == containers::ExecInput::kOpen;
    std::string data;
    std::optional<std::pair<uint16_t, uint16_t>> size;
    bool close_stdin = false;
    for (size_t at = 0; at < message.size();) {
      uint32_t len = at + kFrameHeader <= message.size()
                         ? monitor::frame_length(std::string_view(message).substr(at))
                         : 0;
      if (at + kFrameHeader > message.size() || message.size() - at - kFrameHeader < len)
        return socket()->close(
            "a message must hold whole frames: [type][length, 4 bytes BE][payload]");
      const auto type = static_cast<FrameType>(message[at]);
      const size_t payload = at + kFrameHeader;
      if (type == FrameType::kStdin) {
        if (input) data.append(message, payload, len);
      } else if (type == FrameType::kResize) {
        if (len != 4) return socket()->close("a resize frame holds rows and columns, 2 bytes each");
        auto byte = [&](size_t i) { return static_cast<uint16_t>(uint8_t(message[payload + i])); };
        size = {static_cast<uint16_t>(byte(0) << 8 | byte(1)),
                static_cast<uint16_t>(byte(2) << 8 | byte(3))};
      } else if (type == FrameType::kCloseStdin) {
        close_stdin = input;
      } else {
        return socket()->close(fmt::format("unknown frame type {}", static_cast<int>(type)));
      }
      at = payload + len;
    }
    bool pause;
    {
      std::lock_guard lock(mu_);
      if (!close_stdin_) input_buf_ += data;
      if (size) size_ = size;
      close_stdin_ = close_stdin_ || close_stdin;
      pause = input_buf_.size() >= kMaxPendingInput && !paused_;
      if (pause) paused_ = true;
    }
    if (pause) socket()->pause_reading(true);
    poke();
  }

  void run(EngineFn& engine, server::UpgradeResponder& respond) override {
    auto e = engine();
    auto process = e ? (*e)->exec_interactive(o_.name, o_.request, o_.terminal, o_.input)
                     : Result<std::unique_ptr<ExecSession>>(std::unexpected(e.error()));
    if (!process) {
      respond(std::unexpected(process.error()));
      return;
    }
    accept(respond);
    if (ws_) relay(**process);
    process->reset();  // kills the process unless it ended
  }

  // Until the process exited and its output is drained, or the client closed.
  void relay(ExecSession& p) {
    // A write to the stdin of a process that closed it fails with EPIPE instead.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    const bool tty = p.terminal() >= 0;
    struct Source {
      int fd;
      FrameType type;
    };
    std::vector<Source> sources = {{tty ? p.terminal() : p.stdout_fd(), FrameType::kStdout},
                                   {p.stderr_fd(), FrameType::kStderr}};
    int in = tty ? p.terminal() : p.stdin_fd();
    std::string to_process;
    bool close_stdin = false;
    std::optional<int> exit_code;
    char buf[65536];
    for (;;) {
      std::optional<std::pair<uint16_t, uint16_t>> size;
      bool resume = false;
      {
        std::lock_guard lock(mu_);
        if (closed_) return;
        to_process += input_buf_;
        input_buf_.clear();
        size = std::exchange(size_, std::nullopt);
        close_stdin = close_stdin_;
        resume = paused_ && to_process.size() < kMaxPendingInput / 2;
        if (resume) paused_ = false;
      }
      if (resume) ws_->pause_reading(false);
      if (size) p.resize(size->first, size->second);
      if (close_stdin && to_process.empty() && !tty && in >= 0) {
        p.close_stdin();
        in = -1;
      }
      const bool drained = sources[0].fd < 0 && sources[1].fd < 0;
      if (exit_code && drained) break;
      const bool backed_up = ws_->queued_bytes() >= kMaxPendingOutput;
      const auto out_events = static_cast<short>(backed_up ? 0 : POLLIN);
      pollfd fds[5] = {{wake_fd(), POLLIN, 0},
                       {exit_code ? -1 : p.pidfd(), POLLIN, 0},
                       {sources[0].fd, out_events, 0},
                       {sources[1].fd, out_events, 0},
                       {to_process.empty() ? -1 : in, POLLOUT, 0}};
      // The pty is both an output and the input: one entry for each is fine for poll.
      const int timeout = exit_code && !backed_up ? kDrainGraceMs : -1;
      int n = ::poll(fds, 5, timeout);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ws_->close("poll failed");
      if (n == 0) break;  // exited, and no more output came
      if (fds[0].revents) drain_wake();
      if (fds[1].revents) exit_code = p.exit_code();
      for (int i = 0; i < 2; ++i) {
        if (!(fds[2 + i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t r = ::read(sources[i].fd, buf, sizeof buf);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r <= 0) {
          sources[i].fd = -1;  // end of file, or EIO: the terminal's last user closed it
          continue;
        }
        ws_->send(
            monitor::make_frame(sources[i].type, std::string_view(buf, static_cast<size_t>(r))));
      }
      if (fds[4].revents & (POLLOUT | POLLERR | POLLHUP)) {
        ssize_t w = ::write(in, to_process.data(), to_process.size());
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
          to_process.clear();  // the process does not read any more
          in = -1;
        } else if (w > 0) {
          to_process.erase(0, static_cast<size_t>(w));
        }
      }
    }
    if (!exit_code) exit_code = p.exit_code();
    if (!exit_code) return ws_->close("the process's output ended before it exited");
    ws_->send(monitor::make_frame(FrameType::kExit, Json{{"exit_code", *exit_code}}.dump()));
    ws_->close("exited");
  }

  Options o_;
  std::string input_buf_;  // stdin bytes for the process, under mu_
  std::optional<std::pair<uint16_t, uint16_t>> size_;
  bool close_stdin_ = false;
};

Result<Options> parse_options(Request& req) {
  auto flag = [&](const char* key) {
    auto it = req.query.find(key);
    return it != req.query.end() && (it->second == "1" || it->second == "true");
  };
  Options o{.name = req.params["name"]};
  auto it = req.query.find("request");
  if (it == req.query.end())
    return make_error(ErrorCode::kInvalidArgument,
                      "query parameter 'request' is required: {{\"command\": [...]}}");
  auto body = parse_json(it->second);
  if (!body)
    return make_error(ErrorCode::kInvalidArgument, "query parameter 'request': {}",
                      body.error().message());
  o.request = TRY(containers::parse_exec_request(*body));
  if (flag("tty")) o.terminal = containers::ExecTerminal::kTty;
  if (flag("stdin")) o.input = containers::ExecInput::kOpen;
  return o;
}

}  // namespace

void add_container_exec_route(server::Router& router, EngineFn engine) {
  auto sessions = std::make_shared<SessionSet>();
  router.add_upgrade("/1.0/containers/{name}/exec/attach",
                     [sessions, engine](Request& req, server::UpgradeResponder respond) {
                       auto options = parse_options(req);
                       if (!options) {
                         respond(std::unexpected(options.error()));
                         return;
                       }
                       sessions->start(std::make_shared<ExecAttachSession>(std::move(*options)),
                                       engine, std::move(respond));
                     });
}

}  // namespace vireo::daemon
