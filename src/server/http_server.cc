#include "server/http_server.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <deque>
#include <set>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "base/ids.h"
#include "base/strings.h"
#include "server/websocket.h"

namespace vireo::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using UnixSocket = asio::local::stream_protocol::socket;
using TlsStream = asio::ssl::stream<tcp::socket>;

namespace {

template <class S>
constexpr bool kIsTls = std::is_same_v<S, TlsStream>;

// Connections are closed through this interface when the server stops.
class Connection {
 public:
  virtual ~Connection() = default;
  virtual void close() = 0;
};

std::string peer_fingerprint(TlsStream& stream) {
  X509* cert = SSL_get1_peer_certificate(stream.native_handle());
  if (!cert) return {};
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  X509_digest(cert, EVP_sha256(), md, &len);
  X509_free(cert);
  return to_hex(md, len);
}

const std::set<std::string> kEventTypes = {"lifecycle", "operation", "log"};

}  // namespace

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  Impl(asio::io_context& io, const Router& router, EventHub& events, Credentials credentials,
       ServerLimits limits)
      : io(io),
        router(router),
        events(events),
        credentials(std::move(credentials)),
        limits(limits),
        tls(asio::ssl::context::tls_server) {}

  void track(const std::shared_ptr<Connection>& c) {
    std::erase_if(connections, [](const auto& w) { return w.expired(); });
    connections.push_back(c);
  }

  asio::io_context& io;
  const Router& router;
  EventHub& events;
  Credentials credentials;
  ServerLimits limits;
  asio::ssl::context tls;
  std::unique_ptr<asio::local::stream_protocol::acceptor> unix_acceptor;
  std::unique_ptr<tcp::acceptor> tcp_acceptor;
  std::vector<std::weak_ptr<Connection>> connections;
  bool stopped = false;
};

namespace {

template <class Stream>
class EventSession : public EventSubscriber,
                     public Connection,
                     public std::enable_shared_from_this<EventSession<Stream>> {
 public:
  EventSession(Stream&& stream, HttpServer::Impl& server, std::set<std::string> types)
      : ws_(std::move(stream)), server_(server), types_(std::move(types)) {}

  void run(http::request<http::string_body> req) {
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.async_accept(req, [self = this->shared_from_this()](beast::error_code ec) {
      if (ec) return;
      self->server_.events.subscribe(self);
      self->read_loop();
    });
  }
  const std::set<std::string>& event_types() const override { return types_; }
  void deliver(std::shared_ptr<const std::string> frame) override {
    if (closed_) return;
    if (queue_.size() >= server_.limits.max_queued_events) return close();
    queue_.push_back(std::move(frame));
    if (queue_.size() == 1) write_next();
  }
  void close() override {
    closed_ = true;
    beast::error_code ec;
    beast::get_lowest_layer(ws_).close(ec);
  }

 private:
  // Reads only to notice the client closing; clients send nothing we act on.
  void read_loop() {
    ws_.async_read(buffer_, [self = this->shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->close();
      self->buffer_.clear();
      self->read_loop();
    });
  }
  void write_next() {
    ws_.text(true);
    ws_.async_write(asio::buffer(*queue_.front()),
                    [self = this->shared_from_this()](beast::error_code ec, size_t) {
                      if (ec) return self->close();
                      self->queue_.pop_front();
                      if (!self->queue_.empty()) self->write_next();
                    });
  }

  websocket::stream<Stream> ws_;
  HttpServer::Impl& server_;
  std::set<std::string> types_;
  beast::flat_buffer buffer_;
  std::deque<std::shared_ptr<const std::string>> queue_;
  bool closed_ = false;
};

std::shared_ptr<http::response<http::string_body>> http_response(const Response& response,
                                                                 bool keep_alive,
                                                                 unsigned version) {
  auto res = std::make_shared<http::response<http::string_body>>(
      static_cast<http::status>(response.status), version);
  res->set(http::field::server, "vireod");
  res->set(http::field::content_type, "application/json");
  for (const auto& [name, value] : response.headers) res->set(name, value);
  res->body() = dump_json(response.body);
  res->body() += '\n';
  res->keep_alive(keep_alive);
  res->prepare_payload();
  return res;
}

// The WebSocket of a route (Router::add_upgrade). The public calls post to the io thread;
// everything else runs there.
template <class Stream>
class RouteSocket : public WebSocket,
                    public Connection,
                    public std::enable_shared_from_this<RouteSocket<Stream>> {
 public:
  static constexpr size_t kMaxMessage = 1 << 20;

  RouteSocket(Stream&& stream, HttpServer::Impl& server, http::request<http::string_body> req)
      : ws_(std::move(stream)), server_(server), req_(std::move(req)) {}

  // The route's answer: refuse with an HTTP error, or accept.
  void answer(Result<WebSocketHandlers> handlers) {
    if (done_) return;
    if (!handlers) {
      auto res = http_response(Response::error(handlers.error()), false, req_.version());
      http::async_write(
          ws_.next_layer(), *res,
          [self = this->shared_from_this(), res](beast::error_code, size_t) { self->finish(); });
      return;
    }
    handlers_ = std::move(*handlers);
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.read_message_max(kMaxMessage);
    ws_.async_accept(req_, [self = this->shared_from_this()](beast::error_code ec) {
      if (ec) return self->finish();
      self->open_ = true;
      self->read_loop();
      self->write_next();
    });
  }

  void send(std::string message, MessageKind kind) override {
    queued_ += message.size();
    asio::post(server_.io,
               [self = this->shared_from_this(), message = std::move(message), kind]() mutable {
                 if (self->done_ || self->closing_) return;
                 self->queue_.emplace_back(std::move(message), kind);
                 self->write_next();
               });
  }
  void close(std::string reason) override {
    asio::post(server_.io, [self = this->shared_from_this(), reason = std::move(reason)] {
      if (self->done_ || self->closing_) return;
      self->closing_ = true;
      self->close_reason_ = reason;
      self->write_next();
    });
  }
  void pause_reading(bool paused) override {
    asio::post(server_.io, [self = this->shared_from_this(), paused] {
      self->paused_ = paused;
      self->read_loop();
    });
  }
  size_t queued_bytes() const override { return queued_; }
  // Server stop (io thread).
  void close() override { finish(); }

 private:
  void read_loop() {
    if (!open_ || done_ || paused_ || reading_) return;
    reading_ = true;
    ws_.async_read(buffer_, [self = this->shared_from_this()](beast::error_code ec, size_t) {
      self->reading_ = false;
      if (ec) return self->finish();
      std::string message = beast::buffers_to_string(self->buffer_.data());
      self->buffer_.consume(self->buffer_.size());
      MessageKind kind = self->ws_.got_binary() ? MessageKind::kBinary : MessageKind::kText;
      if (self->handlers_.on_message) self->handlers_.on_message(std::move(message), kind);
      self->read_loop();
    });
  }
  // Writes the next queued message, or the close frame once the queue is empty.
  void write_next() {
    if (!open_ || done_ || writing_) return;
    if (queue_.empty()) {
      if (!closing_) return;
      writing_ = true;
      ws_.async_close(websocket::close_reason(websocket::close_code::normal, close_reason_),
                      [self = this->shared_from_this()](beast::error_code) { self->finish(); });
      return;
    }
    writing_ = true;
    ws_.binary(queue_.front().second == MessageKind::kBinary);
    ws_.async_write(asio::buffer(queue_.front().first),
                    [self = this->shared_from_this()](beast::error_code ec, size_t) {
                      self->writing_ = false;
                      if (ec) return self->finish();
                      self->queued_ -= self->queue_.front().first.size();
                      self->queue_.pop_front();
                      if (self->queue_.empty() && self->handlers_.on_drained)
                        self->handlers_.on_drained();
                      self->write_next();
                    });
  }
  void finish() {
    if (done_) return;
    done_ = true;
    beast::error_code ec;
    beast::get_lowest_layer(ws_).close(ec);
    queue_.clear();
    // Dropping the handlers breaks the cycle between this socket and the route's session.
    auto closed = std::move(handlers_.on_closed);
    handlers_ = {};
    if (closed) closed();
  }

  websocket::stream<Stream> ws_;
  HttpServer::Impl& server_;
  http::request<http::string_body> req_;
  WebSocketHandlers handlers_;
  beast::flat_buffer buffer_;
  std::deque<std::pair<std::string, MessageKind>> queue_;
  std::string close_reason_;
  std::atomic<size_t> queued_{0};
  bool open_ = false, reading_ = false, writing_ = false, paused_ = false, closing_ = false,
       done_ = false;
};

template <class Stream>
class HttpSession : public Connection, public std::enable_shared_from_this<HttpSession<Stream>> {
 public:
  HttpSession(Stream&& stream, HttpServer::Impl& server, std::string peer)
      : stream_(std::move(stream)), server_(server), peer_(std::move(peer)), idle_(server.io) {}

  void start() {
    if constexpr (kIsTls<Stream>) {
      arm_idle_timer();
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                self->idle_.cancel();
                                if (ec) return self->close();
                                self->fingerprint_ = peer_fingerprint(self->stream_);
                                self->read();
                              });
    } else {
      read();
    }
  }
  void close() override {
    beast::error_code ec;
    idle_.cancel();
    beast::get_lowest_layer(stream_).close(ec);
  }

 private:
  void arm_idle_timer() {
    idle_.expires_after(server_.limits.idle_timeout);
    idle_.async_wait([weak = this->weak_from_this()](beast::error_code ec) {
      if (ec) return;
      if (auto self = weak.lock()) self->close();
    });
  }

  void read() {
    parser_.emplace();
    parser_->body_limit(server_.limits.body_limit);
    arm_idle_timer();
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       self->idle_.cancel();
                       self->on_read(ec);
                     });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      return write(Response::error(Error(ErrorCode::kTooLarge,
                                         fmt::format("request body exceeds the limit of {}",
                                                     format_bytes(server_.limits.body_limit)))),
                   false, 11);
    }
    if (ec == http::error::end_of_stream || ec == asio::error::eof) return close();
    if (ec && ec.category() == http::make_error_code(http::error::bad_target).category())
      return write(Response::error(Error(ErrorCode::kInvalidArgument,
                                         "malformed HTTP request: " + ec.message())),
                   false, 11);
    if (ec) return close();
    auto req = parser_->release();
    if (websocket::is_upgrade(req)) return upgrade(std::move(req));
    handle(std::move(req));
  }

  bool authorized(const http::request<http::string_body>& req) const {
    if constexpr (!kIsTls<Stream>) {
      return true;  // the socket's file mode decides who can connect
    } else {
      if (!fingerprint_.empty() && server_.credentials.certificate_trusted &&
          server_.credentials.certificate_trusted(fingerprint_))
        return true;
      auto auth = req.find(http::field::authorization);
      if (auth == req.end()) return false;
      std::string_view value(auth->value().data(), auth->value().size());
      if (!value.starts_with("Bearer ")) return false;
      return server_.credentials.token_valid &&
             server_.credentials.token_valid(std::string(trim(value.substr(7))));
    }
  }

  static Error unauthorized() {
    return Error(ErrorCode::kUnauthorized,
                 "not authorized: present a trusted client certificate or a bearer token "
                 "(create one with 'vireod token create')");
  }

  Request make_request(http::request<http::string_body>& req) {
    Request r;
    r.method = method_from_string(
        std::string_view(req.method_string().data(), req.method_string().size()));
    parse_target(std::string_view(req.target().data(), req.target().size()), r.path, r.query);
    r.body = std::move(req.body());
    if (auto it = req.find(http::field::if_match); it != req.end())
      r.if_match = std::string(it->value().data(), it->value().size());
    r.peer = peer_;
    return r;
  }

  void handle(http::request<http::string_body> req) {
    const bool keep_alive = req.keep_alive();
    const unsigned version = req.version();
    if (!authorized(req)) return write(Response::error(unauthorized()), keep_alive, version);
    request_ = make_request(req);
    server_.router.dispatch(
        request_, [self = this->shared_from_this(), keep_alive, version](Response response) {
          self->write(std::move(response), keep_alive, version);
        });
  }

  void upgrade(http::request<http::string_body> req) {
    Request r = make_request(req);
    auto refuse = [&](const Error& e) { write(Response::error(e), false, req.version()); };
    if (!authorized(req)) return refuse(unauthorized());
    if (r.path != "/1.0/events") return upgrade_route(std::move(req), r);
    std::set<std::string> types;
    if (auto t = r.query.find("type"); t != r.query.end()) {
      for (auto& type : split(t->second, ',')) {
        if (!kEventTypes.contains(type))
          return refuse(
              Error(ErrorCode::kInvalidArgument,
                    fmt::format("unknown event type '{}' (use lifecycle, operation, log)", type)));
        types.insert(type);
      }
    }
    idle_.cancel();
    auto session =
        std::make_shared<EventSession<Stream>>(std::move(stream_), server_, std::move(types));
    server_.track(session);
    session->run(std::move(req));
  }

  // A route's WebSocket: the router's upgrade handler accepts or refuses it.
  void upgrade_route(http::request<http::string_body> req, Request& r) {
    const UpgradeHandler* handler = server_.router.find_upgrade(r);
    if (!handler)
      return write(
          Response::error(Error(ErrorCode::kNotFound, "no WebSocket endpoint at " + r.path)), false,
          req.version());
    idle_.cancel();
    auto socket =
        std::make_shared<RouteSocket<Stream>>(std::move(stream_), server_, std::move(req));
    server_.track(socket);
    (*handler)(r,
               [socket, io = &server_.io](
                   Result<WebSocketHandlers> handlers) -> std::shared_ptr<WebSocket> {
                 const bool accepted = handlers.has_value();
                 asio::post(*io, [socket, handlers = std::move(handlers)]() mutable {
                   socket->answer(std::move(handlers));
                 });
                 if (!accepted) return nullptr;
                 return socket;
               });
  }

  void write(Response response, bool keep_alive, unsigned version) {
    auto res = http_response(response, keep_alive, version);
    http::async_write(stream_, *res,
                      [self = this->shared_from_this(), res](beast::error_code ec, size_t) {
                        if (ec || !res->keep_alive()) return self->close();
                        self->read();
                      });
  }

  Stream stream_;
  HttpServer::Impl& server_;
  std::string peer_;
  std::string fingerprint_;
  asio::steady_timer idle_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Request request_;  // kept alive while an asynchronous handler runs
};

void accept_unix(std::shared_ptr<HttpServer::Impl> server) {
  server->unix_acceptor->async_accept([server](beast::error_code ec, UnixSocket socket) {
    if (server->stopped) return;
    if (!ec) {
      auto session = std::make_shared<HttpSession<UnixSocket>>(std::move(socket), *server, "unix");
      server->track(session);
      session->start();
    }
    accept_unix(server);
  });
}

void accept_tls(std::shared_ptr<HttpServer::Impl> server) {
  server->tcp_acceptor->async_accept([server](beast::error_code ec, tcp::socket socket) {
    if (server->stopped) return;
    if (!ec) {
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      auto endpoint = socket.remote_endpoint(ignored);
      auto session = std::make_shared<HttpSession<TlsStream>>(
          TlsStream(std::move(socket), server->tls), *server,
          endpoint.address().to_string() + ":" + std::to_string(endpoint.port()));
      server->track(session);
      session->start();
    }
    accept_tls(server);
  });
}

}  // namespace

HttpServer::HttpServer(asio::io_context& io, const Router& router, EventHub& events,
                       Credentials credentials, ServerLimits limits)
    : impl_(std::make_shared<Impl>(io, router, events, std::move(credentials), limits)) {}

HttpServer::~HttpServer() {
  stop();
}

Result<void> HttpServer::listen_unix(const std::string& path, int mode) {
  using Proto = asio::local::stream_protocol;
  beast::error_code ec;
  // A socket file left by a dead daemon is replaced; one that answers belongs to a live daemon.
  Proto::socket probe(impl_->io);
  probe.connect(Proto::endpoint(path), ec);
  if (!ec) return make_error(ErrorCode::kConflict, "{} is in use by another running vireod", path);
  ::unlink(path.c_str());
  auto acceptor = std::make_unique<Proto::acceptor>(impl_->io);
  acceptor->open(Proto(), ec);
  if (!ec) acceptor->bind(Proto::endpoint(path), ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(ErrorCode::kIo, "listen on {}: {}", path, ec.message());
  if (::chmod(path.c_str(), static_cast<mode_t>(mode)) != 0) return errno_error("chmod " + path);
  impl_->unix_acceptor = std::move(acceptor);
  accept_unix(impl_);
  return {};
}

Result<uint16_t> HttpServer::listen_tls(const std::string& host, uint16_t port,
                                        const std::string& cert_file, const std::string& key_file) {
  beast::error_code ec;
  impl_->tls.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                         asio::ssl::context::no_tlsv1_1);
  impl_->tls.use_certificate_chain_file(cert_file, ec);
  if (ec)
    return make_error(ErrorCode::kInvalidArgument, "TLS certificate {}: {}", cert_file,
                      ec.message());
  impl_->tls.use_private_key_file(key_file, asio::ssl::context::pem, ec);
  if (ec) return make_error(ErrorCode::kInvalidArgument, "TLS key {}: {}", key_file, ec.message());
  // Ask for a client certificate but accept any: trust is decided by fingerprint afterwards,
  // and clients without one may still use a bearer token.
  impl_->tls.set_verify_mode(asio::ssl::verify_peer);
  impl_->tls.set_verify_callback([](bool, asio::ssl::verify_context&) { return true; });
  auto address = asio::ip::make_address(host, ec);
  if (ec)
    return make_error(ErrorCode::kInvalidArgument, "listen address '{}': {}", host, ec.message());
  auto acceptor = std::make_unique<tcp::acceptor>(impl_->io);
  tcp::endpoint endpoint(address, port);
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(ErrorCode::kIo, "listen on {}:{}: {}", host, port, ec.message());
  uint16_t bound = acceptor->local_endpoint().port();
  impl_->tcp_acceptor = std::move(acceptor);
  accept_tls(impl_);
  return bound;
}

void HttpServer::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  beast::error_code ec;
  if (impl_->unix_acceptor) impl_->unix_acceptor->close(ec);
  if (impl_->tcp_acceptor) impl_->tcp_acceptor->close(ec);
  for (auto& weak : impl_->connections) {
    if (auto c = weak.lock()) c->close();
  }
  impl_->connections.clear();
}

}  // namespace vireo::server
