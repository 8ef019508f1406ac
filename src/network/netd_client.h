#pragma once
// NetdClient: a blocking client of vireo-netd's control socket (JSON lines, docs/network.md),
// for vireod. One request at a time on one connection, reconnecting once when netd went away
// and came back. A failed reply becomes an Error with netd's message and its error category,
// so callers can map it to an HTTP status. Thread-safe (calls are serialized).
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include "base/fd.h"
#include "base/json.h"
#include "base/result.h"

namespace vireo::net {

class NetdClient {
 public:
  // Connects and checks that netd answers (a network.list round trip).
  [[nodiscard]] static Result<std::unique_ptr<NetdClient>> connect(
      std::filesystem::path socket, std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Sends {"op": op, ...fields} and returns the reply without "ok".
  [[nodiscard]] Result<Json> call(const std::string& op, Json fields = Json::object());

 private:
  NetdClient(std::filesystem::path socket, std::chrono::milliseconds timeout)
      : socket_(std::move(socket)), timeout_(timeout) {}
  [[nodiscard]] Result<void> open();
  [[nodiscard]] Result<Json> roundtrip(const std::string& line);

  std::filesystem::path socket_;
  std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  Fd fd_;
  std::string buffer_;  // bytes read past the last reply line
};

// The error category netd names in a reply's "code" (to_string(ErrorCode)); kInternal if unknown.
ErrorCode error_code_from_string(std::string_view name);

}  // namespace vireo::net
