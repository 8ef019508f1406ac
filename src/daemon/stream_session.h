#pragma once
// What the container attach and exec WebSocket routes share (they speak the monitor's attach
// frames, monitor/frames.h): a session that owns one relay thread between its WebSocket and a
// process side, and the set of a route's sessions (finished ones joined as new ones come, all
// joined when the route goes).
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/fd.h"
#include "containers/engine.h"
#include "daemon/container_attach.h"
#include "monitor/frames.h"
#include "server/websocket.h"

namespace vireo::daemon {

using monitor::FrameType;
using monitor::kFrameHeader;

// A WebSocket session relayed by a thread of its own. Subclasses implement run() (on that
// thread: answer the upgrade with accept() or an error, then relay until the end) and
// on_message() (client messages, on the io thread). end() — the client closed, or the route
// goes — sets closed() and wakes the relay through wake_fd().
class StreamSession : public std::enable_shared_from_this<StreamSession> {
 public:
  StreamSession() : wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  virtual ~StreamSession() = default;

  void start(EngineFn engine, server::UpgradeResponder respond) {
    thread_ = std::thread([self = shared_from_this(), engine = std::move(engine),
                           respond = std::move(respond)]() mutable {
      self->run(engine, respond);
      self->finished_ = true;
    });
  }
  // Ends the session and joins its thread.
  void stop() {
    end();
    if (thread_.joinable()) thread_.join();
  }
  bool finished() const { return finished_; }

 protected:
  virtual void run(EngineFn& engine, server::UpgradeResponder& respond) = 0;
  virtual void on_message(std::string message) = 0;
  // Extra work when the session ends (e.g. cancelling a wait); under no lock.
  virtual void on_end() {}

  // Accepts the upgrade; the WebSocket's events come to this session while it lives.
  void accept(server::UpgradeResponder& respond) {
    std::weak_ptr<StreamSession> weak = weak_from_this();
    std::lock_guard lock(mu_);
    ws_ = respond(server::WebSocketHandlers{
        .on_message =
            [weak](std::string m, server::MessageKind) {
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
  }
  void end() {
    on_end();
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    poke();
  }
  void poke() {
    uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
  }
  // Clears the wake-ups (after poll said wake_fd() is readable).
  void drain_wake() {
    uint64_t n;
    (void)!::read(wake_.get(), &n, sizeof n);
  }
  int wake_fd() const { return wake_.get(); }
  std::shared_ptr<server::WebSocket> socket() {
    std::lock_guard lock(mu_);
    return ws_;
  }

  std::shared_ptr<server::WebSocket> ws_;  // written once, under mu_, by the session's thread
  std::mutex mu_;                          // guards what the io thread and the relay share
  bool closed_ = false;
  bool paused_ = false;  // reading from the client is paused (input backed up)

 private:
  Fd wake_;
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

// A route's sessions: finished ones are joined as new ones come; all are stopped and joined
// when the set goes.
class SessionSet {
 public:
  ~SessionSet() {
    std::list<std::shared_ptr<StreamSession>> all;
    {
      std::lock_guard lock(mu_);
      all.swap(sessions_);
    }
    for (auto& s : all) s->stop();
  }
  void start(std::shared_ptr<StreamSession> session, EngineFn engine,
             server::UpgradeResponder respond) {
    std::list<std::shared_ptr<StreamSession>> done;
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
    session->start(std::move(engine), std::move(respond));
  }

 private:
  std::mutex mu_;
  std::list<std::shared_ptr<StreamSession>> sessions_;
};

}  // namespace vireo::daemon
