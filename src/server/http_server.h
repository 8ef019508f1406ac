#pragma once
// HttpServer: the REST/WebSocket front of vireod on Boost.Beast. Listens on a Unix socket
// (trusted by its file mode) and optionally on TCP with TLS, where each request must carry a
// trusted client certificate or a valid bearer token. Requests go to the Router; a WebSocket
// upgrade of /1.0/events subscribes to the EventHub, other upgrades go to the Router's
// WebSocket routes (server/websocket.h).
//
// Everything runs on the one io_context the caller drives; not thread-safe beyond that.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "base/result.h"
#include "server/events.h"
#include "server/router.h"

namespace vireo::server {

struct Credentials {
  std::function<bool(const std::string& token)> token_valid;
  std::function<bool(const std::string& sha256_fingerprint)> certificate_trusted;
};

struct ServerLimits {
  size_t body_limit = 16 << 20;
  std::chrono::seconds idle_timeout{300};
  size_t max_queued_events = 10000;  // per WebSocket client; a slower client is disconnected
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, const Router& router, EventHub& events,
             Credentials credentials, ServerLimits limits);
  ~HttpServer();

  // Binds the socket (replacing a stale one, refusing one in use) with the given file mode.
  Result<void> listen_unix(const std::string& path, int mode);
  // Binds host:port (port 0 picks one) and returns the port.
  Result<uint16_t> listen_tls(const std::string& host, uint16_t port, const std::string& cert_file,
                              const std::string& key_file);
  // Closes the listeners and every open connection.
  void stop();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace vireo::server
