#include "daemon/container_attach.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>

#include <atomic>
#include <list>
#include <mutex>
#include <thread>

#include "base/fd.h"
#include "base/log.h"
#include "containers/engine.h"

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
constexpr size_t kFrameHeader = 5;
constexpr size_t kMaxFrame = 1 << 20;

// Frame types (monitor/attach.h).
constexpr uint8_t kStdin = 0, kExit = 3, kResize = 4, kCloseStdin = 5;

uint32_t frame_length(const std::string& buf, size_t at) {
  return (uint32_t{static_cast<uint8_t>(buf[at + 1])} << 24) |
         (uint32_t{static_cast<uint8_t>(buf[at + 2])} << 16) |
         (uint32_t{static_cast<uint8_t>(buf[at + 3])} << 8) |
         uint32_t{static_cast<uint8_t>(buf[at + 4])};
}

class AttachSession : public std::enable_shared_from_this<AttachSession> {
 public:
  AttachSession(std::string name, bool input) : name_(std::move(name)), input_(input) {
    wake_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  }

  void start(EngineFn engine, server::UpgradeResponder respond) {
    thread_ = std::thread([self = shared_from_this(), engine = std::move(engine),
                           respond = std::move(respond)]() mutable { self->run(engine, respond); });
  }
  // Ends the session and joins its thread (route owner's destruction).
  void stop() {
    end();
    if (thread_.joinable()) thread_.join();
  }
  bool finished() const { return finished_; }

 private:
  void end() {
    stop_.request_stop();
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    poke();
  }
  std::shared_ptr<WebSocket> socket() {
    std::lock_guard lock(mu_);
    return ws_;
  }
  void poke() {
    uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
  }

  // Client → monitor, on the io thread: whole frames; stdin ones only when input is allowed.
  void on_message(std::string message) {
    std::string keep;
    for (size_t at = 0; at < message.size();) {
      uint32_t len = at + kFrameHeader <= message.size() ? frame_length(message, at) : 0;
      if (at + kFrameHeader > message.size() || message.size() - at - kFrameHeader < len)
        return socket()->close(
            "a message must hold whole frames: [type][length, 4 bytes BE][payload]");
      uint8_t type = static_cast<uint8_t>(message[at]);
      if (type != kStdin && type != kResize && type != kCloseStdin)
        return socket()->close(fmt::format("unknown frame type {}", type));
      if (type == kResize || input_) keep.append(message, at, kFrameHeader + len);
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

  void run(EngineFn& engine, server::UpgradeResponder& respond) {
    bool answered = false;
    auto accept = [&] {
      if (answered) return;
      answered = true;
      std::weak_ptr<AttachSession> weak = weak_from_this();
      std::lock_guard lock(mu_);
      ws_ = respond(server::WebSocketHandlers{
          .on_message =
              [weak](std::string m, MessageKind) {
                if (auto self = weak.lock()) self->on_message(std::move(m));
              },
          .on_closed =
              [weak] {
                if (auto self = weak.lock()) self->end();
              },
          .on_drained =
              [weak] {
                if (auto self = weak.lock()) self->poke();
              },
      });
    };
    auto e = engine();
    Result<Fd> fd = e ? (*e)->attach(name_, kStartWait, stop_.get_token(), accept)
                      : Result<Fd>(std::unexpected(e.error()));
    if (!fd) {
      if (!answered) respond(std::unexpected(fd.error()));
      if (answered) ws_->close(fd.error().message());
      finished_ = true;
      return;
    }
    accept();
    relay(fd->get());
    finished_ = true;
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
      pollfd fds[2] = {{monitor, want, 0}, {wake_.get(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return ws_->close("poll failed");
      }
      if (fds[1].revents) {
        uint64_t n;
        (void)!::read(wake_.get(), &n, sizeof n);
      }
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
        uint32_t len = frame_length(from_monitor, at);
        if (len > kMaxFrame) return ws_->close("the monitor sent a malformed frame");
        if (from_monitor.size() - at - kFrameHeader < len) break;
        uint8_t type = static_cast<uint8_t>(from_monitor[at]);
        ws_->send(from_monitor.substr(at, kFrameHeader + len));
        at += kFrameHeader + len;
        if (type == kExit) return ws_->close("exited");
      }
      from_monitor.erase(0, at);
    }
  }

  std::string name_;
  bool input_;
  Fd wake_;
  std::stop_source stop_;
  std::shared_ptr<WebSocket> ws_;  // written once, under mu_, by the session's thread
  std::mutex mu_;
  std::string input_buf_;  // client frames for the monitor
  bool paused_ = false;
  bool closed_ = false;
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

// Owns the sessions; joins them when the route goes.
class AttachService {
 public:
  explicit AttachService(EngineFn engine) : engine_(std::move(engine)) {}
  ~AttachService() {
    std::list<std::shared_ptr<AttachSession>> all;
    {
      std::lock_guard lock(mu_);
      all.swap(sessions_);
    }
    for (auto& s : all) s->stop();
  }

  void open(Request& req, server::UpgradeResponder respond) {
    auto flag = [&](const char* key) {
      auto it = req.query.find(key);
      return it != req.query.end() && (it->second == "1" || it->second == "true");
    };
    auto session = std::make_shared<AttachSession>(req.params["name"], flag("stdin"));
    std::list<std::shared_ptr<AttachSession>> done;
    {
      std::lock_guard lock(mu_);
      for (auto it = sessions_.begin(); it != sessions_.end();) {
        if ((*it)->finished()) {
          done.push_back(std::move(*it));
          it = sessions_.erase(it);
        } else {
          ++it;
        }
      }
      sessions_.push_back(session);
    }
    for (auto& s : done) s->stop();  // finished: joins at once
    session->start(engine_, std::move(respond));
  }

 private:
  EngineFn engine_;
  std::mutex mu_;
  std::list<std::shared_ptr<AttachSession>> sessions_;
};

}  // namespace

void add_container_attach_route(server::Router& router, EngineFn engine) {
  auto service = std::make_shared<AttachService>(std::move(engine));
  router.add_upgrade("/1.0/containers/{name}/attach",
                     [service](Request& req, server::UpgradeResponder respond) {
                       service->open(req, std::move(respond));
                     });
}

}  // namespace vireo::daemon
