#pragma once
// QmpClient speaks the QEMU Machine Protocol over a unix socket: greeting and capabilities
// negotiation, commands matched to their replies by id, and asynchronous events.
//
// One reader thread per client reads everything QEMU sends. Replies wake the caller waiting in
// execute(); events and the end of the connection are delivered to callbacks on the reader
// thread. Callbacks must return quickly and must not call execute() (it would wait for the
// thread that runs them; execute() detects this and fails). execute() is thread-safe.
// Garbage from the peer (non-JSON lines, replies with unknown ids) is logged and skipped; a peer
// that dies mid-command fails the pending commands with kUnavailable.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "base/fd.h"
#include "base/json.h"
#include "base/result.h"

namespace vireo::compute {

struct QmpEvent {
  std::string name;  // "SHUTDOWN", "RESET", "STOP", "RESUME", ...
  Json data;         // the event's "data" member, an empty object when absent
  std::chrono::system_clock::time_point timestamp;
};

struct QmpOptions {
  std::chrono::milliseconds timeout{5000};  // greeting, negotiation and default command timeout
  std::function<void(const QmpEvent&)> on_event;
  std::function<void(const std::string& why)> on_close;  // once, when the connection ends
};

class QmpClient {
 public:
  // Connects to QEMU's QMP socket and negotiates capabilities.
  [[nodiscard]] static Result<std::unique_ptr<QmpClient>> connect(const std::string& socket_path,
                                                                  QmpOptions options = {});
  // The same over an already connected stream socket (tests use a socketpair).
  [[nodiscard]] static Result<std::unique_ptr<QmpClient>> connect_fd(Fd fd,
                                                                     QmpOptions options = {});

  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;
  ~QmpClient();

  // Runs a command and returns its "return" value; a QMP error becomes an Error naming the
  // command, its error class and description.
  [[nodiscard]] Result<Json> execute(const std::string& command, const Json& arguments = nullptr,
                                     std::optional<std::chrono::milliseconds> timeout = {});
  // The same, passing fd to QEMU with the command (SCM_RIGHTS), for "getfd" and "add-fd". fd
  // stays the caller's; QEMU gets its own copy.
  [[nodiscard]] Result<Json> execute_with_fd(const std::string& command, const Json& arguments,
                                             int fd);

  // The greeting's "QMP" member (version, capabilities).
  const Json& greeting() const { return greeting_; }
  // False once the peer closed the connection or sent something unrecoverable.
  bool connected() const;

 private:
  struct Pending {
    std::optional<Json> reply;
  };

  QmpClient(Fd fd, QmpOptions options);
  Result<void> handshake();
  Result<Json> read_message_sync(std::chrono::steady_clock::time_point deadline);
  Result<void> send_line(const std::string& line, std::chrono::steady_clock::time_point deadline,
                         int pass_fd = -1);
  Result<Json> run(const std::string& command, const Json& arguments,
                   std::optional<std::chrono::milliseconds> timeout, int pass_fd);
  void reader_loop();
  void handle_line(std::string_view line);
  void dispatch_event(const Json& msg);
  void close_with(const std::string& why);

  Fd fd_;
  QmpOptions options_;
  Json greeting_;
  std::string buffer_;  // bytes read but not yet split into lines

  mutable std::mutex mutex_;
  std::condition_variable replied_;
  std::map<uint64_t, Pending*> pending_;  // guarded by mutex_
  uint64_t next_id_ = 1;                  // guarded by mutex_
  std::optional<std::string> closed_;     // guarded by mutex_: why the connection ended
  std::mutex write_mutex_;                // one command line on the wire at a time
  std::atomic<bool> stopping_{false};     // the destructor runs: no on_close callback
  std::thread reader_;
};

}  // namespace vireo::compute
