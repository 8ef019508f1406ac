#include "daemon/container_attach.h"

#include <fcntl.h>
#include <poll.h>

#include "base/fd.h"
#include "base/log.h"
#include "containers/engine.h"
#include "daemon/stream_session.h"

namespace vireo::daemon {

namespace {

using server::MessageKind;
using server::Request;
using server::WebSocket;

// How long a client attached to a created container waits for its start.
constexpr auto kStartWait = std::chrono::hours(24);
// Client input not yet written to the monitor above which the client is read no further.
constexpr size_t kMaxPendingInput = 1 << 20;
// Output not yet written to the client above which the monitor is read no further (the
// monitor then drops a client that stays behind).
constexpr size_t kMaxPendingOutput = 1 << 20;
constexpr size_t kMaxFrame = 1 << 20;

class AttachSession final : public StreamSession {
 public:
  AttachSession(std::string name, bool input) : name_(std::move(name)), input_(input) {}

 private:
  void on_end() override { stop_.request_stop(); }

  // Client → monitor, on the io thread: whole frames; stdin ones only when input is allowed.
  void on_message(std::string message) override {
    std::string keep;
    for (size_t at = 0; at < message.size();) {
      uint32_t len = at + kFrameHeader <= message.size()
                         ? monitor::frame_length(std::string_view(message).substr(at))
                         : 0;
      if (at + kFrameHeader > message.size() || message.size() - at - kFrameHeader < len)
        return socket()->close(
            "a message must hold whole frames: [type][length, 4 bytes BE][payload]");
      auto type = static_cast<FrameType>(message[at]);
      if (type != FrameType::kStdin && type != FrameType::kResize && type != FrameType::kCloseStdin)
        return socket()->close(fmt::format("unknown frame type {}", static_cast<int>(type)));
      if (type == FrameType::kResize || input_) keep.append(message, at, kFrameHeader + len);
      at += kFrameHeader + len;
    }
    if (keep.empty()) return;
    bool pause;
    {
      std::lock_guard lock(mu_);
      input_buf_ += keep;
      pause = input_buf_.size() >= kMaxPendingInput && !paused_;
      if (pause) paused_ = true;
    }
    if (pause) socket()->pause_reading(true);
    poke();
  }

  void run(EngineFn& engine, server::UpgradeResponder& respond) override {
    bool answered = false;
    auto accept_once = [&] {
      if (answered) return;
      answered = true;
      accept(respond);
    };
    auto e = engine();
    Result<Fd> fd = e ? (*e)->attach(name_, kStartWait, stop_.get_token(), accept_once)
                      : Result<Fd>(std::unexpected(e.error()));
    if (!fd) {
      if (!answered) respond(std::unexpected(fd.error()));
      if (answered) ws_->close(fd.error().message());
      return;
    }
    accept_once();
    relay(fd->get());
  }

  // Until the exit frame, the monitor going away, or the client closing.
  void relay(int monitor) {
    ::fcntl(monitor, F_SETFL, ::fcntl(monitor, F_GETFL) | O_NONBLOCK);
    std::string from_monitor, to_monitor;
    char buf[65536];
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (closed_) return;
        to_monitor += input_buf_;
        input_buf_.clear();
      }
      const bool backed_up = ws_->queued_bytes() >= kMaxPendingOutput;
      const auto want =
          static_cast<short>((backed_up ? 0 : POLLIN) | (to_monitor.empty() ? 0 : POLLOUT));
      pollfd fds[2] = {{monitor, want, 0}, {wake_fd(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return ws_->close("poll failed");
      }
      if (fds[1].revents) drain_wake();
      if (fds[0].revents & POLLOUT) {
        ssize_t n = ::write(monitor, to_monitor.data(), to_monitor.size());
        if (n < 0 && errno != EAGAIN && errno != EINTR) return ws_->close("the monitor went away");
        if (n > 0) to_monitor.erase(0, static_cast<size_t>(n));
        bool resume = false;
        {
          std::lock_guard lock(mu_);
          resume = paused_ && to_monitor.size() + input_buf_.size() < kMaxPendingInput / 2;
          if (resume) paused_ = false;
        }
        if (resume) ws_->pause_reading(false);
      }
      if (backed_up || !(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(monitor, buf, sizeof buf);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) return ws_->close("the container's monitor went away");
      from_monitor.append(buf, static_cast<size_t>(n));
      // Each whole frame becomes one message.
      size_t at = 0;
      while (from_monitor.size() - at >= kFrameHeader) {
        uint32_t len = monitor::frame_length(std::string_view(from_monitor).substr(at));
        if (len > kMaxFrame) return ws_->close("the monitor sent a malformed frame");
        if (from_monitor.size() - at - kFrameHeader < len) break;
        auto type = static_cast<FrameType>(from_monitor[at]);
        ws_->send(from_monitor.substr(at, kFrameHeader + len));
        at += kFrameHeader + len;
        if (type == FrameType::kExit) return ws_->close("exited");
      }
      from_monitor.erase(0, at);
    }
  }

  std::string name_;
  bool input_;
  std::stop_source stop_;
  std::string input_buf_;  // client frames for the monitor, under mu_
};

}  // namespace

void add_container_attach_route(server::Router& router, EngineFn engine) {
  auto sessions = std::make_shared<SessionSet>();
  router.add_upgrade("/1.0/containers/{name}/attach",
                     [sessions, engine](Request& req, server::UpgradeResponder respond) {
                       auto it = req.query.find("stdin");
                       bool input =
                           it != req.query.end() && (it->second == "1" || it->second == "true");
                       sessions->start(std::make_shared<AttachSession>(req.params["name"], input),
                                       engine, std::move(respond));
                     });
}

}  // namespace vireo::daemon
