#pragma once
// The client's wire: one HTTP/1.1 connection (Unix socket or TLS) kept between requests, and
// WebSocket connections for event and attach streams. Internal to the client library.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "client/client.h"

namespace vireo::client {

class Client::Transport {
 public:
  virtual ~Transport() = default;
  virtual Result<Reply> roundtrip(std::string_view method, std::string_view target,
                                  const std::string* body, std::string_view if_match,
                                  std::chrono::milliseconds timeout) = 0;
  // Opens a separate connection, upgrades it, and hands each text message to on_message until
  // it returns false or the stream ends.
  virtual Result<void> websocket(const std::string& target,
                                 const std::function<bool(std::string_view)>& on_message,
                                 const std::function<bool()>& ready) = 0;
  // A separate connection upgraded to a bidirectional stream (Client::open_stream).
  virtual Result<std::unique_ptr<MessageStream>> open_stream(const std::string& target,
                                                             MessageHandlers handlers) = 0;
};

Result<std::unique_ptr<Client::Transport>> make_transport(const ConnectOptions& options);

}  // namespace vireo::client
