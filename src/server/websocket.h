#pragma once
// WebSocket routes: a route that answers a WebSocket upgrade (GET with Upgrade: websocket) with
// a bidirectional stream of messages, for attach-like endpoints. The router maps the path; the
// HttpServer does the handshake and the framing. /1.0/events is served by the HttpServer itself.
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "server/http.h"

namespace vireo::server {

enum class MessageKind { kText, kBinary };

// An accepted WebSocket, owned by the server. Thread-safe: every call may come from any thread
// (it is posted to the io thread); messages are written in the order sent. Calls after the
// connection closed do nothing.
class WebSocket {
 public:
  virtual ~WebSocket() = default;
  // Queues a message; messages sent before the handshake completes are written after it.
  virtual void send(std::string message, MessageKind kind = MessageKind::kBinary) = 0;
  // Writes what is queued, then closes with a normal close frame carrying reason.
  virtual void close(std::string reason = {}) = 0;
  // Stops (true) or resumes delivering received messages, for flow control: while paused the
  // server reads nothing more from the peer.
  virtual void pause_reading(bool paused) = 0;
  // Bytes sent and not yet written to the peer, for flow control the other way.
  virtual size_t queued_bytes() const = 0;
};

// What a route does with its WebSocket. Both run on the io thread.
struct WebSocketHandlers {
  std::function<void(std::string message, MessageKind kind)> on_message;
  // Once: the peer closed, the connection failed, or close() completed.
  std::function<void()> on_closed;
  // Everything sent so far is written (optional).
  std::function<void()> on_drained;
};

// Called exactly once, from any thread, now or later: an error refuses the upgrade with that
// error's HTTP status and body; handlers accept it. Returns the WebSocket (null on refusal).
using UpgradeResponder = std::function<std::shared_ptr<WebSocket>(Result<WebSocketHandlers>)>;
using UpgradeHandler = std::function<void(Request&, UpgradeResponder)>;

}  // namespace vireo::server
