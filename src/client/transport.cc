#include "client/transport.h"

#include <sys/socket.h>

#include <deque>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "api/error_body.h"

namespace vireo::client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using UnixSocket = asio::local::stream_protocol::socket;
using TlsStream = asio::ssl::stream<tcp::socket>;

namespace {

void set_socket_timeout(int fd, std::chrono::milliseconds timeout) {
  timeval tv{.tv_sec = static_cast<time_t>(timeout.count() / 1000),
             .tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

template <class Stream>
int native_fd(Stream& s) {
  return beast::get_lowest_layer(s).native_handle();
}

// The WebSocket upgrade of target on ws (driven by io); a refusal is the server's error.
template <class WebSocketStream>
Result<void> handshake(asio::io_context& io, WebSocketStream& ws, const std::string& host,
                       const std::string& target, const std::string& token, const char* what) {
  if (!token.empty()) {
    ws.set_option(websocket::stream_base::decorator([token](websocket::request_type& r) {
      r.set(http::field::authorization, "Bearer " + token);
    }));
  }
  beast::error_code ec;
  http::response<http::string_body> refusal;
  // The asynchronous handshake, because Boost 1.74's synchronous one drops the refusal's
  // body, which carries the server's error message.
  ws.async_handshake(refusal, host, target, [&](beast::error_code e) { ec = e; });
  io.run();
  io.restart();
  if (ec) {
    if (refusal.result_int() >= 400) {
      auto body = parse_json(refusal.body());
      return std::unexpected(api::error_from_body(refusal.result_int(), body ? *body : Json()));
    }
    return make_error(ErrorCode::kUnavailable, "{}: {}", what, ec.message());
  }
  return {};
}

// Client::open_stream's stream: everything but send/close/the destructor runs on the thread.
template <class Stream>
class WebSocketMessageStream final : public MessageStream {
 public:
  WebSocketMessageStream(std::unique_ptr<asio::io_context> io, std::unique_ptr<Stream> stream,
                         MessageHandlers handlers)
      : io_(std::move(io)), stream_(std::move(stream)), ws_(*stream_), h_(std::move(handlers)) {}
  ~WebSocketMessageStream() override {
    asio::post(*io_, [this] { finish(make_error(ErrorCode::kCancelled, "stream closed")); });
    if (thread_.joinable()) thread_.join();
  }

  Result<void> open(const std::string& host, const std::string& target, const std::string& token) {
    TRY(handshake(*io_, ws_, host, target, token, "attach stream"));
    ws_.binary(true);
    read();
    thread_ = std::thread([this] { io_->run(); });
    return {};
  }
  void send(std::string message) override {
    asio::post(*io_, [this, message = std::move(message)]() mutable {
      if (done_ || closing_) return;
      queue_.push_back(std::move(message));
      write_next();
    });
  }
  void close() override {
    asio::post(*io_, [this] {
      if (done_ || closing_) return;
      closing_ = true;
      write_next();
    });
  }

 private:
  void read() {
    ws_.async_read(buffer_, [this](beast::error_code ec, size_t) {
      if (ec == websocket::error::closed) return finish(std::string(ws_.reason().reason));
      if (ec) return finish(make_error(ErrorCode::kUnavailable, "attach stream: {}", ec.message()));
      auto data = buffer_.data();
      if (h_.on_message)
        h_.on_message(std::string_view(static_cast<const char*>(data.data()), data.size()));
      buffer_.consume(buffer_.size());
      read();
    });
  }
  void write_next() {
    if (writing_ || done_) return;
    if (queue_.empty()) {
      if (!closing_ || close_sent_) return;
      close_sent_ = writing_ = true;
      // The read then ends with the server's close.
      ws_.async_close(websocket::close_code::normal,
                      [this](beast::error_code) { writing_ = false; });
      return;
    }
    writing_ = true;
    ws_.async_write(asio::buffer(queue_.front()), [this](beast::error_code ec, size_t) {
      writing_ = false;
      if (ec) return finish(make_error(ErrorCode::kUnavailable, "attach stream: {}", ec.message()));
      queue_.pop_front();
      write_next();
    });
  }
  void finish(Result<std::string> reason) {
    if (done_) return;
    done_ = true;
    beast::error_code ec;
    beast::get_lowest_layer(*stream_).close(ec);
    if (h_.on_closed) h_.on_closed(std::move(reason));
  }

  std::unique_ptr<asio::io_context> io_;
  std::unique_ptr<Stream> stream_;
  websocket::stream<Stream&> ws_;
  MessageHandlers h_;
  beast::flat_buffer buffer_;
  std::deque<std::string> queue_;
  bool writing_ = false, closing_ = false, close_sent_ = false, done_ = false;
  std::thread thread_;
};

template <class Stream>
class StreamTransport : public Client::Transport {
 public:
  using DialFn = std::function<Result<std::unique_ptr<Stream>>(asio::io_context&)>;
  StreamTransport(std::string host_header, std::string token, DialFn dial,
                  std::chrono::milliseconds timeout)
      : host_(std::move(host_header)),
        token_(std::move(token)),
        dial_(std::move(dial)),
        timeout_(timeout) {}

  Result<void> open() {
    stream_ = TRY(dial_(io_));
    return {};
  }

  Result<Reply> roundtrip(std::string_view method, std::string_view target, const std::string* body,
                          std::string_view if_match, std::chrono::milliseconds timeout) override {
    http::request<http::string_body> req;
    req.method_string(method);
    req.target(target);
    req.version(11);
    req.set(http::field::host, host_);
    req.set(http::field::user_agent, "vireo-client");
    if (!if_match.empty()) req.set(http::field::if_match, if_match);
    if (!token_.empty()) req.set(http::field::authorization, "Bearer " + token_);
    if (body) {
      req.set(http::field::content_type, "application/json");
      req.body() = *body;
    }
    req.keep_alive(true);
    req.prepare_payload();
    const bool reused = stream_ != nullptr;
    if (!stream_) TRY(open());
    auto reply = exchange(req, timeout);
    // The server may have closed an idle kept-alive connection; one fresh try is safe then.
    if (!reply && reused && reply.error().code() == ErrorCode::kUnavailable) {
      TRY(open());
      reply = exchange(req, timeout);
    }
    return reply;
  }

  Result<void> websocket(const std::string& target,
                         const std::function<bool(std::string_view)>& on_message,
                         const std::function<bool()>& ready) override {
    asio::io_context io;
    auto stream = TRY(dial_(io));
    websocket::stream<Stream&> ws(*stream);
    TRY(handshake(io, ws, host_, target, token_, "event stream"));
    beast::error_code ec;
    set_socket_timeout(native_fd(*stream), std::chrono::milliseconds(0));
    if (ready && !ready()) {
      ws.close(websocket::close_code::normal, ec);
      return {};
    }
    beast::flat_buffer buffer;
    for (;;) {
      ws.read(buffer, ec);
      if (ec == websocket::error::closed) return {};
      if (ec) return make_error(ErrorCode::kUnavailable, "event stream ended: {}", ec.message());
      auto data = buffer.data();
      std::string_view text(static_cast<const char*>(data.data()), data.size());
      bool more = on_message(text);
      buffer.consume(buffer.size());
      if (!more) {
        ws.close(websocket::close_code::normal, ec);
        return {};
      }
    }
  }

  Result<std::unique_ptr<MessageStream>> open_stream(const std::string& target,
                                                     MessageHandlers handlers) override {
    auto io = std::make_unique<asio::io_context>();
    auto stream = TRY(dial_(*io));
    auto s = std::make_unique<WebSocketMessageStream<Stream>>(std::move(io), std::move(stream),
                                                              std::move(handlers));
    TRY(s->open(host_, target, token_));
    return s;
  }

 private:
  Result<Reply> exchange(http::request<http::string_body>& req, std::chrono::milliseconds timeout) {
    set_socket_timeout(native_fd(*stream_), std::max(timeout, timeout_));
    beast::error_code ec;
    http::write(*stream_, req, ec);
    if (ec) return lost(ec);
    http::response_parser<http::string_body> parser;
    parser.body_limit(256ull << 20);
    http::read(*stream_, buffer_, parser, ec);
    if (ec) return lost(ec);
    auto res = parser.release();
    Reply reply;
    reply.status = res.result_int();
    if (!res.body().empty()) {
      auto body = parse_json(res.body());
      if (!body)
        return make_error(ErrorCode::kIo, "vireod sent a malformed reply: {}",
                          body.error().message());
      reply.body = std::move(*body);
    }
    if (auto it = res.find(http::field::etag); it != res.end())
      reply.etag = std::string(it->value());
    if (auto it = res.find(http::field::location); it != res.end())
      reply.location = std::string(it->value());
    if (!res.keep_alive()) stream_.reset();
    if (reply.status >= 400) return std::unexpected(api::error_from_body(reply.status, reply.body));
    return reply;
  }

  std::unexpected<Error> lost(const beast::error_code& ec) {
    stream_.reset();
    buffer_.clear();
    if (ec == asio::error::would_block || ec == asio::error::timed_out)
      return std::unexpected(Error(ErrorCode::kTimeout, "vireod did not answer in time"));
    return std::unexpected(
        Error(ErrorCode::kUnavailable, "connection to vireod lost: " + ec.message()));
  }

  std::string host_;
  std::string token_;
  DialFn dial_;
  std::chrono::milliseconds timeout_;
  asio::io_context io_;
  std::unique_ptr<Stream> stream_;
  beast::flat_buffer buffer_;
};

Result<std::unique_ptr<UnixSocket>> dial_unix(asio::io_context& io, const std::string& path) {
  auto s = std::make_unique<UnixSocket>(io);
  beast::error_code ec;
  s->connect(asio::local::stream_protocol::endpoint(path), ec);
  if (ec)
    return make_error(ErrorCode::kUnavailable,
                      "cannot reach vireod at {}: {}; is vireod running? (start it with 'vireod')",
                      path, ec.message());
  return s;
}

Result<std::unique_ptr<TlsStream>> dial_tls(asio::io_context& io, asio::ssl::context& tls,
                                            const std::string& remote) {
  auto colon = remote.rfind(':');
  if (colon == std::string::npos)
    return make_error(ErrorCode::kInvalidArgument, "remote '{}': expected HOST:PORT", remote);
  std::string host = remote.substr(0, colon), port = remote.substr(colon + 1);
  beast::error_code ec;
  tcp::resolver resolver(io);
  auto endpoints = resolver.resolve(host, port, ec);
  if (ec) return make_error(ErrorCode::kUnavailable, "resolve {}: {}", remote, ec.message());
  auto s = std::make_unique<TlsStream>(io, tls);
  asio::connect(s->next_layer(), endpoints, ec);
  if (ec)
    return make_error(ErrorCode::kUnavailable, "cannot reach vireod at {}: {}", remote,
                      ec.message());
  s->next_layer().set_option(tcp::no_delay(true));
  SSL_set_tlsext_host_name(s->native_handle(), host.c_str());
  s->handshake(asio::ssl::stream_base::client, ec);
  if (ec)
    return make_error(ErrorCode::kUnavailable, "TLS handshake with {}: {}", remote, ec.message());
  return s;
}

}  // namespace

Result<std::unique_ptr<Client::Transport>> make_transport(const ConnectOptions& options) {
  if (options.remote.empty()) {
    auto t = std::make_unique<StreamTransport<UnixSocket>>(
        "vireod", "",
        [path = options.socket_path](asio::io_context& io) { return dial_unix(io, path); },
        options.timeout);
    TRY(t->open());
    return t;
  }
  if (options.server_ca.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "a remote needs the server's certificate to verify it (--tls-server-cert)");
  auto tls = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  beast::error_code ec;
  tls->load_verify_file(options.server_ca, ec);
  if (ec)
    return make_error(ErrorCode::kInvalidArgument, "server certificate {}: {}", options.server_ca,
                      ec.message());
  tls->set_verify_mode(asio::ssl::verify_peer);
  if (!options.client_cert.empty()) {
    tls->use_certificate_chain_file(options.client_cert, ec);
    if (!ec)
      tls->use_private_key_file(
          options.client_key.empty() ? options.client_cert : options.client_key,
          asio::ssl::context::pem, ec);
    if (ec)
      return make_error(ErrorCode::kInvalidArgument, "client certificate {}: {}",
                        options.client_cert, ec.message());
  }
  auto t = std::make_unique<StreamTransport<TlsStream>>(
      options.remote, options.token,
      [tls, remote = options.remote](asio::io_context& io) { return dial_tls(io, *tls, remote); },
      options.timeout);
  TRY(t->open());
  return t;
}

}  // namespace vireo::client
