#include "network/netd_client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace vireo::net {

ErrorCode error_code_from_string(std::string_view name) {
  for (int c = 0; c <= static_cast<int>(ErrorCode::kInternal); ++c)
    if (to_string(static_cast<ErrorCode>(c)) == name) return static_cast<ErrorCode>(c);
  return ErrorCode::kInternal;
}

Result<std::unique_ptr<NetdClient>> NetdClient::connect(std::filesystem::path socket,
                                                        std::chrono::milliseconds timeout) {
  std::unique_ptr<NetdClient> c(new NetdClient(std::move(socket), timeout));
  TRY(c->call("network.list"));
  return c;
}

Result<void> NetdClient::open() {
  buffer_.clear();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_.native().size() >= sizeof(addr.sun_path))
    return make_error(ErrorCode::kInvalidArgument, "socket path {} is too long", socket_.string());
  std::memcpy(addr.sun_path, socket_.c_str(), socket_.native().size());
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket(AF_UNIX)");
  timeval tv{.tv_sec = static_cast<time_t>(timeout_.count() / 1000),
             .tv_usec = static_cast<suseconds_t>(timeout_.count() % 1000 * 1000)};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    return errno_error("connect " + socket_.string());
  fd_ = std::move(fd);
  return {};
}

Result<Json> NetdClient::roundtrip(const std::string& line) {
  if (!fd_) TRY(open());
  for (size_t done = 0; done < line.size();) {
    ssize_t n = ::send(fd_.get(), line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_error("send to vireo-netd");
    done += static_cast<size_t>(n);
  }
  for (;;) {
    if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string reply = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return parse_json(reply);
    }
    char chunk[16384];
    ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read from vireo-netd");
    if (n == 0) return make_error(ErrorCode::kUnavailable, "vireo-netd closed the connection");
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

Result<Json> NetdClient::call(const std::string& op, Json fields) {
  fields["op"] = op;
  const std::string line = dump_json(fields) + "\n";
  std::lock_guard lock(mutex_);
  auto reply = roundtrip(line);
  if (!reply) {
    // netd restarted or the connection broke: one fresh attempt.
    fd_ = Fd();
    reply = roundtrip(line);
  }
  if (!reply) {
    fd_ = Fd();
    return make_error(ErrorCode::kUnavailable, "vireo-netd at {}: {}", socket_.string(),
                      reply.error().message());
  }
  if (!reply->is_object())
    return make_error(ErrorCode::kInternal, "vireo-netd: reply is not an object");
  if (!reply->value("ok", false))
    return make_error(error_code_from_string(reply->value("code", "")),
                      reply->value("error", std::string("vireo-netd: request failed")));
  reply->erase("ok");
  return std::move(*reply);
}

}  // namespace vireo::net
