#include "compute/console_log.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstring>

#include "base/file.h"
#include "base/log.h"
#include "compute/unix_socket.h"

namespace vireo::compute {

namespace {

Result<Fd> open_log(const std::filesystem::path& path) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!fd) return errno_error(fmt::format("open {}", path.string()));
  return fd;
}

}  // namespace

ConsoleLog::ConsoleLog(Fd socket, Fd log, std::filesystem::path log_path, uint64_t max_bytes)
    : socket_(std::move(socket)),
      log_(std::move(log)),
      log_path_(std::move(log_path)),
      max_bytes_(max_bytes) {}

ConsoleLog::~ConsoleLog() {
  ::shutdown(socket_.get(), SHUT_RDWR);
  if (reader_.joinable()) reader_.join();
}

Result<std::unique_ptr<ConsoleLog>> ConsoleLog::open(const std::string& socket_path,
                                                     const std::filesystem::path& log_path,
                                                     uint64_t max_bytes) {
  auto socket = TRY_CTX(connect_unix(socket_path), "console");
  auto log = TRY_CTX(open_log(log_path), "console log");
  std::unique_ptr<ConsoleLog> console(
      new ConsoleLog(std::move(socket), std::move(log), log_path, max_bytes));
  struct stat st {};
  if (::fstat(console->log_.get(), &st) == 0)
    console->log_size_ = static_cast<uint64_t>(st.st_size);
  console->reader_ = std::thread([c = console.get()] { c->reader_loop(); });
  return console;
}

void ConsoleLog::reader_loop() {
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(socket_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    append(std::string_view(buf, static_cast<size_t>(n)));
  }
  std::lock_guard subscribers_lock(subscribers_mutex_);
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    changed_.notify_all();
  }
  for (auto& [id, fn] : subscribers_) fn({});
}

void ConsoleLog::append(std::string_view data) {
  // A failed log write loses log lines, never the VM: carry on.
  if (::write(log_.get(), data.data(), data.size()) < 0)
    spdlog::warn("console log {}: write failed: {}", log_path_.string(), std::strerror(errno));
  log_size_ += data.size();
  if (log_size_ > max_bytes_) trim_log_file();
  // Subscribers get the chunk before waiters wake, and subscribe() reads the backlog under the
  // same lock: each byte reaches a viewer exactly once, in the backlog or in a callback.
  std::lock_guard subscribers_lock(subscribers_mutex_);
  for (auto& [id, fn] : subscribers_) fn(data);
  std::lock_guard lock(mutex_);
  recent_.append(data);
  if (recent_.size() > max_bytes_) recent_.erase(0, recent_.size() - max_bytes_ / 2);
  changed_.notify_all();
}

uint64_t ConsoleLog::subscribe(Subscriber fn, std::string* backlog) {
  std::lock_guard lock(subscribers_mutex_);
  if (backlog) *backlog = recent();
  uint64_t id = next_subscriber_++;
  auto [it, inserted] = subscribers_.emplace(id, std::move(fn));
  bool closed = false;
  {
    std::lock_guard state(mutex_);
    closed = closed_;
  }
  if (closed) it->second({});
  return id;
}

void ConsoleLog::unsubscribe(uint64_t id) {
  std::lock_guard lock(subscribers_mutex_);
  subscribers_.erase(id);
}

// Keeps the newest half of the file. This thread is the only writer, so replacing the file
// through a rename loses nothing; readers see the old or the new file.
void ConsoleLog::trim_log_file() {
  auto content = read_file(log_path_);
  if (!content) return spdlog::warn("console log: {}", content.error().message());
  std::string_view keep(*content);
  if (keep.size() > max_bytes_ / 2) keep.remove_prefix(keep.size() - max_bytes_ / 2);
  if (auto r = write_file_atomic(log_path_, keep, 0600); !r)
    return spdlog::warn("console log: {}", r.error().message());
  auto log = open_log(log_path_);
  if (!log) return spdlog::warn("console log: {}", log.error().message());
  log_ = std::move(*log);
  log_size_ = keep.size();
}

Result<void> ConsoleLog::wait_for(std::string_view text, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  bool found = changed_.wait_for(
      lock, timeout, [&] { return recent_.find(text) != std::string::npos || closed_; });
  if (recent_.find(text) != std::string::npos) return {};
  if (found && closed_)
    return make_error(ErrorCode::kUnavailable, "console closed before '{}' appeared", text);
  return make_error(ErrorCode::kTimeout, "'{}' did not appear on the console within {} ms", text,
                    timeout.count());
}

std::string ConsoleLog::recent() const {
  std::lock_guard lock(mutex_);
  return recent_;
}

Result<void> ConsoleLog::write(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(socket_.get(), data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("console write");
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

}  // namespace vireo::compute
