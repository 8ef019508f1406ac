#pragma once
// ConsoleLog keeps a VM's serial console output: it connects to the console socket QEMU listens
// on, copies everything the guest prints into a bounded log file (the "ring log": past max_bytes
// the oldest half is dropped) and lets callers wait for a text to appear.
//
// QEMU accepts one client on the console socket and drops output while none is connected, so
// the runner connects a ConsoleLog before the guest's first instruction and viewers are served
// from it (recent() for the backlog, subscribe() for what follows), not from the socket. One reader
// thread; all public methods are thread-safe.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "base/fd.h"
#include "base/result.h"

namespace vireo::compute {

class ConsoleLog {
 public:
  static constexpr uint64_t kDefaultMaxBytes = 1 << 20;

  // Connects to socket_path and starts appending to log_path (created if absent).
  [[nodiscard]] static Result<std::unique_ptr<ConsoleLog>> open(
      const std::string& socket_path, const std::filesystem::path& log_path,
      uint64_t max_bytes = kDefaultMaxBytes);

  ConsoleLog(const ConsoleLog&) = delete;
  ConsoleLog& operator=(const ConsoleLog&) = delete;
  ~ConsoleLog();

  // Waits until text has appeared in the output received by this object. Fails with kTimeout,
  // or kUnavailable when the console closed (QEMU exited) without it.
  [[nodiscard]] Result<void> wait_for(std::string_view text, std::chrono::milliseconds timeout);
  // Output received by this object, at most the last max_bytes.
  std::string recent() const;
  // Sends keyboard input to the guest's serial port.
  [[nodiscard]] Result<void> write(std::string_view data);

  // Viewers: fn receives every chunk of output from now on, on the reader thread, until
  // unsubscribe(id) returns; backlog, when given, receives recent() at that same point, so a
  // viewer sees each byte once. An empty chunk, once, means the console closed (QEMU exited; at
  // once when it already had). fn must be quick and must not (un)subscribe.
  using Subscriber = std::function<void(std::string_view)>;
  uint64_t subscribe(Subscriber fn, std::string* backlog = nullptr);
  void unsubscribe(uint64_t id);

 private:
  ConsoleLog(Fd socket, Fd log, std::filesystem::path log_path, uint64_t max_bytes);
  void reader_loop();
  void append(std::string_view data);
  void trim_log_file();

  Fd socket_;
  Fd log_;
  std::filesystem::path log_path_;
  uint64_t max_bytes_;
  uint64_t log_size_ = 0;  // reader thread only

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string recent_;            // guarded by mutex_
  bool closed_ = false;           // guarded by mutex_
  std::mutex subscribers_mutex_;  // held while subscribers run, so unsubscribe() waits them out
  std::map<uint64_t, Subscriber> subscribers_;
  uint64_t next_subscriber_ = 1;
  std::thread reader_;
};

}  // namespace vireo::compute
