#include "compute/qmp_client.h"

#include <poll.h>
#include <sys/socket.h>

#include <cstring>

#include "base/log.h"
#include "compute/unix_socket.h"

namespace vireo::compute {

namespace {

using Clock = std::chrono::steady_clock;

// QEMU's replies are small; a line this long means the peer is not QEMU or is broken.
constexpr size_t kMaxLine = 16 << 20;

int ms_until(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

// Takes the next complete line out of buffer, without its line ending.
std::optional<std::string> take_line(std::string& buffer) {
  size_t nl = buffer.find('\n');
  if (nl == std::string::npos) return std::nullopt;
  std::string line = buffer.substr(0, nl);
  buffer.erase(0, nl + 1);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

std::chrono::system_clock::time_point event_time(const Json& msg) {
  auto ts = msg.find("timestamp");
  if (ts == msg.end() || !ts->is_object()) return std::chrono::system_clock::now();
  auto field = [&](const char* key) -> int64_t {
    auto it = ts->find(key);
    return it != ts->end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  };
  auto s = field("seconds");
  auto us = field("microseconds");
  return std::chrono::system_clock::time_point(std::chrono::seconds(s) +
                                               std::chrono::microseconds(us));
}

Error qmp_error(const std::string& command, const Json& err) {
  std::string cls = "unknown";
  std::string desc = "no description";
  if (err.is_object()) {
    if (err.contains("class") && err["class"].is_string()) cls = err["class"].get<std::string>();
    if (err.contains("desc") && err["desc"].is_string()) desc = err["desc"].get<std::string>();
  }
  auto code = (cls == "CommandNotFound" || cls == "DeviceNotFound") ? ErrorCode::kNotFound
                                                                    : ErrorCode::kInvalidArgument;
  return Error(code, fmt::format("qmp {}: {}: {}", command, cls, desc));
}

}  // namespace

QmpClient::QmpClient(Fd fd, QmpOptions options)
    : fd_(std::move(fd)), options_(std::move(options)) {}

QmpClient::~QmpClient() {
  stopping_ = true;
  // Wakes the reader thread out of read(); it then sees the end of the stream and exits.
  ::shutdown(fd_.get(), SHUT_RDWR);
  if (reader_.joinable()) reader_.join();
}

Result<std::unique_ptr<QmpClient>> QmpClient::connect(const std::string& socket_path,
                                                      QmpOptions options) {
  auto fd = TRY_CTX(connect_unix(socket_path), "qmp");
  return with_context(connect_fd(std::move(fd), std::move(options)),
                      fmt::format("qmp {}", socket_path));
}

Result<std::unique_ptr<QmpClient>> QmpClient::connect_fd(Fd fd, QmpOptions options) {
  std::unique_ptr<QmpClient> client(new QmpClient(std::move(fd), std::move(options)));
  TRY(client->handshake());
  // Held while reader_ is assigned so the thread sees its own id in execute().
  std::lock_guard lock(client->mutex_);
  client->reader_ = std::thread([c = client.get()] { c->reader_loop(); });
  return client;
}

bool QmpClient::connected() const {
  std::lock_guard lock(mutex_);
  return !closed_.has_value();
}

Result<void> QmpClient::handshake() {
  auto deadline = Clock::now() + options_.timeout;
  auto greeting = TRY_CTX(read_message_sync(deadline), "read greeting");
  if (!greeting.is_object() || !greeting.contains("QMP"))
    return make_error(ErrorCode::kUnavailable, "peer did not send a QMP greeting: {}",
                      dump_json(greeting).substr(0, 200));
  greeting_ = greeting["QMP"];
  TRY(send_line(R"({"execute":"qmp_capabilities"})", deadline));
  for (;;) {
    auto reply = TRY_CTX(read_message_sync(deadline), "capabilities negotiation");
    if (!reply.is_object()) continue;
    if (reply.contains("error"))
      return std::unexpected(qmp_error("qmp_capabilities", reply["error"]));
    if (reply.contains("return")) return {};
  }
}

// Reads until one JSON line arrives; used only before the reader thread starts.
Result<Json> QmpClient::read_message_sync(Clock::time_point deadline) {
  for (;;) {
    while (auto line = take_line(buffer_)) {
      auto msg = parse_json(*line);
      if (msg) return std::move(*msg);
      spdlog::warn("qmp: skipping garbage from peer: {}", line->substr(0, 120));
    }
    if (buffer_.size() > kMaxLine) return make_error(ErrorCode::kUnavailable, "line too long");
    pollfd pfd{fd_.get(), POLLIN, 0};
    int r = ::poll(&pfd, 1, ms_until(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("poll");
    if (r == 0) return make_error(ErrorCode::kTimeout, "timed out waiting for QEMU");
    char buf[4096];
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read");
    if (n == 0) return make_error(ErrorCode::kUnavailable, "connection closed by QEMU");
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

Result<void> QmpClient::send_line(const std::string& line, Clock::time_point deadline,
                                  int pass_fd) {
  std::lock_guard lock(write_mutex_);
  std::string data = line + "\n";
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = 0;
    if (pass_fd >= 0) {
      // The fd rides on the first byte QEMU reads of this command.
      iovec iov{data.data() + sent, data.size() - sent};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
      n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) pass_fd = -1;
    } else {
      n = ::send(fd_.get(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return errno_error("send");
    pollfd pfd{fd_.get(), POLLOUT, 0};
    int r = ::poll(&pfd, 1, ms_until(deadline));
    if (r == 0) return make_error(ErrorCode::kTimeout, "timed out sending to QEMU");
  }
  return {};
}

Result<Json> QmpClient::execute(const std::string& command, const Json& arguments,
                                std::optional<std::chrono::milliseconds> timeout) {
  return run(command, arguments, timeout, -1);
}

Result<Json> QmpClient::execute_with_fd(const std::string& command, const Json& arguments, int fd) {
  if (fd < 0) return make_error(ErrorCode::kInvalidArgument, "qmp {}: no fd to pass", command);
  return run(command, arguments, std::nullopt, fd);
}

Result<Json> QmpClient::run(const std::string& command, const Json& arguments,
                            std::optional<std::chrono::milliseconds> timeout, int pass_fd) {
  if (std::this_thread::get_id() == reader_.get_id())
    return make_error(ErrorCode::kInternal, "qmp {}: called from a QMP callback", command);
  auto deadline = Clock::now() + timeout.value_or(options_.timeout);
  Pending pending;
  uint64_t id = 0;
  {
    std::lock_guard lock(mutex_);
    if (closed_) return make_error(ErrorCode::kUnavailable, "qmp {}: {}", command, *closed_);
    id = next_id_++;
    pending_[id] = &pending;
  }
  Json request = {{"execute", command}, {"id", id}};
  if (!arguments.is_null()) request["arguments"] = arguments;
  auto sent = send_line(dump_json(request), deadline, pass_fd);
  std::unique_lock lock(mutex_);
  if (sent) {
    replied_.wait_until(lock, deadline, [&] { return pending.reply || closed_; });
  }
  pending_.erase(id);
  if (!sent) return std::unexpected(std::move(sent.error()).with_context("qmp " + command));
  if (pending.reply) {
    const Json& reply = *pending.reply;
    if (reply.contains("error")) return std::unexpected(qmp_error(command, reply["error"]));
    return reply["return"];
  }
  if (closed_) return make_error(ErrorCode::kUnavailable, "qmp {}: {}", command, *closed_);
  return make_error(ErrorCode::kTimeout, "qmp {}: no reply within {} ms", command,
                    timeout.value_or(options_.timeout).count());
}

void QmpClient::reader_loop() {
  { std::lock_guard lock(mutex_); }  // waits until connect_fd() has stored reader_
  char buf[16384];
  for (;;) {
    while (auto line = take_line(buffer_)) handle_line(*line);
    if (buffer_.size() > kMaxLine) return close_with("QMP line too long, dropped the connection");
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return close_with(fmt::format("QMP read failed: {}", std::strerror(errno)));
    if (n == 0) return close_with("QMP connection closed by QEMU");
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

void QmpClient::handle_line(std::string_view line) {
  if (line.empty()) return;
  auto msg = parse_json(line);
  if (!msg || !msg->is_object()) {
    spdlog::warn("qmp: skipping garbage from QEMU: {}", line.substr(0, 120));
    return;
  }
  if (msg->contains("event")) return dispatch_event(*msg);
  auto id = msg->find("id");
  bool is_reply = msg->contains("return") || msg->contains("error");
  if (!is_reply || id == msg->end() || !id->is_number_unsigned()) {
    spdlog::warn("qmp: skipping unexpected message: {}", std::string(line.substr(0, 120)));
    return;
  }
  std::lock_guard lock(mutex_);
  auto it = pending_.find(id->get<uint64_t>());
  if (it == pending_.end()) return;  // a reply after its caller timed out
  it->second->reply = std::move(*msg);
  replied_.notify_all();
}

void QmpClient::dispatch_event(const Json& msg) {
  if (!msg["event"].is_string() || !options_.on_event) return;
  QmpEvent event{.name = msg["event"].get<std::string>(),
                 .data = msg.contains("data") ? msg["data"] : Json::object(),
                 .timestamp = event_time(msg)};
  options_.on_event(event);
}

void QmpClient::close_with(const std::string& why) {
  {
    std::lock_guard lock(mutex_);
    if (closed_) return;
    closed_ = why;
    replied_.notify_all();
  }
  if (!stopping_ && options_.on_close) options_.on_close(why);
}

}  // namespace vireo::compute
