#include "client/transport.h"

#include <sys/socket.h>

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
    if (!token_.empty()) {
      ws.set_option(websocket::stream_base::decorator([token = token_](websocket::request_type& r) {
        r.set(http::field::authorization, "Bearer " + token);
      }));
    }
    beast::error_code ec;
    http::response<http::string_body> refusal;
    // The asynchronous handshake, because Boost 1.74's synchronous one drops the refusal's
    // body, which carries the server's error message.
    ws.async_handshake(refusal, host_, target, [&](beast::error_code e) { ec = e; });
    io.run();
    if (ec) {
      if (refusal.result_int() >= 400) {
        auto body = parse_json(refusal.body());
        return std::unexpected(api::error_from_body(refusal.result_int(), body ? *body : Json()));
      }
      return make_error(ErrorCode::kUnavailable, "event stream: {}", ec.message());
    }
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
