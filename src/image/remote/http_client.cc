#include "image/remote/http_client.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <limits>
#include <variant>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace vireo::image::remote {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using TlsStream = asio::ssl::stream<tcp::socket>;

namespace {

constexpr size_t kChunk = 1 << 20;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool default_port(const Url& u) {
  return (u.scheme == "http" && u.port == "80") || (u.scheme == "https" && u.port == "443");
}

std::string host_text(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

Error net_error(const Url& url, std::string_view what, const boost::system::error_code& ec) {
  ErrorCode code = ec == asio::error::timed_out || ec == asio::error::would_block
                       ? ErrorCode::kTimeout
                       : ErrorCode::kUnavailable;
  return Error(code, fmt::format("{} {}: {}", what, url.origin(), ec.message()));
}

}  // namespace

Result<Url> Url::parse(std::string_view text) {
  Url u;
  auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos)
    return make_error(ErrorCode::kInvalidArgument, "URL '{}' has no scheme", text);
  u.scheme = lower(text.substr(0, scheme_end));
  if (u.scheme != "http" && u.scheme != "https")
    return make_error(ErrorCode::kInvalidArgument, "URL '{}': only http and https are supported",
                      text);
  std::string_view rest = text.substr(scheme_end + 3);
  auto path_start = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_start);
  u.target = path_start == std::string_view::npos ? "/" : std::string(rest.substr(path_start));
  if (u.target.front() == '?') u.target.insert(0, "/");
  if (authority.find('@') != std::string_view::npos)
    return make_error(ErrorCode::kInvalidArgument, "URL '{}': user info is not supported", text);
  std::string_view port;
  if (authority.starts_with("[")) {
    auto close = authority.find(']');
    if (close == std::string_view::npos)
      return make_error(ErrorCode::kInvalidArgument, "URL '{}': unclosed '['", text);
    u.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':')
      port = authority.substr(close + 2);
  } else {
    auto colon = authority.rfind(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (u.host.empty()) return make_error(ErrorCode::kInvalidArgument, "URL '{}' has no host", text);
  for (char c : port)
    if (!std::isdigit(static_cast<unsigned char>(c)))
      return make_error(ErrorCode::kInvalidArgument, "URL '{}': bad port", text);
  u.port = port.empty() ? (u.scheme == "https" ? "443" : "80") : std::string(port);
  for (char c : u.target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return make_error(ErrorCode::kInvalidArgument, "URL '{}': invalid character in path", text);
  return u;
}

Result<Url> Url::resolve(std::string_view location) const {
  if (location.find("://") != std::string_view::npos) return parse(location);
  if (location.starts_with("//")) return parse(scheme + ":" + std::string(location));
  if (!location.starts_with("/"))
    return make_error(ErrorCode::kInvalidArgument, "unsupported relative Location '{}'", location);
  return parse(origin() + std::string(location));
}

std::string Url::origin() const {
  return scheme + "://" + host_text(host) + ":" + port;
}

std::string HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return {};
}

// One connection to an origin, plain or TLS.
class HttpClient::Connection {
 public:
  Connection(std::string origin, std::chrono::milliseconds timeout)
      : origin_(std::move(origin)), timeout_(timeout) {}

  Result<void> open(const Url& url, const TlsOptions& tls) {
    tcp::resolver resolver(io_);
    boost::system::error_code ec;
    auto endpoints = resolver.resolve(url.host, url.port, ec);
    if (ec) return std::unexpected(net_error(url, "resolve", ec));
    tcp::socket socket(io_);
    asio::connect(socket, endpoints, ec);
    if (ec) return std::unexpected(net_error(url, "connect to", ec));
    socket.set_option(tcp::no_delay(true));
    set_timeouts(socket.native_handle());
    if (url.scheme == "http") {
      stream_.emplace<tcp::socket>(std::move(socket));
      return {};
    }
    ssl_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    if (tls.verify) {
      ssl_->set_default_verify_paths(ec);
      if (!tls.ca_file.empty()) ssl_->load_verify_file(tls.ca_file, ec);
      if (ec)
        return make_error(ErrorCode::kInvalidArgument, "CA file '{}': {}", tls.ca_file,
                          ec.message());
      ssl_->set_verify_mode(asio::ssl::verify_peer);
      ssl_->set_verify_callback(asio::ssl::host_name_verification(url.host));
    } else {
      ssl_->set_verify_mode(asio::ssl::verify_none);
    }
    auto& tls_stream = stream_.emplace<std::unique_ptr<TlsStream>>(
        std::make_unique<TlsStream>(std::move(socket), *ssl_));
    ::SSL_set_tlsext_host_name(tls_stream->native_handle(), url.host.c_str());
    tls_stream->handshake(asio::ssl::stream_base::client, ec);
    if (ec) return std::unexpected(net_error(url, "TLS handshake with", ec));
    return {};
  }

  const std::string& origin() const { return origin_; }
  bool reusable() const { return reusable_; }
  bool header_received() const { return header_received_; }

  Result<HttpResponse> send(const HttpRequest& req, const BodySink* sink, size_t max_body) {
    reusable_ = false;
    header_received_ = false;
    if (auto* plain = std::get_if<tcp::socket>(&stream_))
      return roundtrip(*plain, req, sink, max_body);
    return roundtrip(*std::get<std::unique_ptr<TlsStream>>(stream_), req, sink, max_body);
  }

 private:
  void set_timeouts(int fd) {
    timeval tv{.tv_sec = static_cast<time_t>(timeout_.count() / 1000),
               .tv_usec = static_cast<suseconds_t>((timeout_.count() % 1000) * 1000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }

  template <class Stream>
  Result<void> write_request(Stream& s, const HttpRequest& req) {
    http::request<http::empty_body> head;
    head.method_string(req.method);
    head.target(req.url.target);
    head.version(11);
    head.set(http::field::host, default_port(req.url)
                                    ? host_text(req.url.host)
                                    : host_text(req.url.host) + ":" + req.url.port);
    head.set(http::field::user_agent, "vireo");
    for (const auto& [k, v] : req.headers) head.set(k, v);
    uint64_t length = req.body_fd >= 0 ? req.body_length : req.body.size();
    if (length > 0 || req.method == "PUT" || req.method == "POST" || req.method == "PATCH")
      head.set(http::field::content_length, std::to_string(length));
    boost::system::error_code ec;
    http::request_serializer<http::empty_body> sr(head);
    http::write_header(s, sr, ec);
    if (ec) return std::unexpected(net_error(req.url, "send to", ec));
    if (req.body_fd < 0) {
      if (!req.body.empty()) asio::write(s, asio::buffer(req.body), ec);
      if (ec) return std::unexpected(net_error(req.url, "send to", ec));
      return {};
    }
    std::vector<char> chunk(kChunk);
    uint64_t sent = 0;
    while (sent < length) {
      ssize_t n =
          ::read(req.body_fd, chunk.data(), std::min<uint64_t>(chunk.size(), length - sent));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_error("read upload body");
      if (n == 0) return make_error(ErrorCode::kIo, "upload body ended early");
      asio::write(s, asio::buffer(chunk.data(), static_cast<size_t>(n)), ec);
      if (ec) return std::unexpected(net_error(req.url, "send to", ec));
      sent += static_cast<uint64_t>(n);
      if (req.on_sent) req.on_sent(sent);
    }
    return {};
  }

  template <class Stream>
  Result<HttpResponse> roundtrip(Stream& s, const HttpRequest& req, const BodySink* sink,
                                 size_t max_body) {
    TRY(write_request(s, req));
    boost::system::error_code ec;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // boost::none misbehaves in 1.74
    if (req.method == "HEAD") parser.skip(true);
    http::read_header(s, buffer_, parser, ec);
    if (ec) return std::unexpected(net_error(req.url, "read reply from", ec));
    HttpResponse resp;
    const auto& msg = parser.get();
    resp.status = static_cast<int>(msg.result_int());
    for (const auto& field : msg)
      resp.headers.emplace_back(lower(field.name_string()), std::string(field.value()));
    header_received_ = true;
    bool to_sink = sink && resp.status >= 200 && resp.status < 300;
    bool keep_alive = msg.keep_alive();
    if (to_sink && sink->on_head) TRY(sink->on_head(resp));
    if (parser.is_done()) {
      reusable_ = keep_alive;
      return resp;
    }
    if (to_sink && parser.content_length() && !parser.chunked()) {
      TRY(read_raw(s, *parser.content_length(), *sink, req.url));
      reusable_ = keep_alive;
      return resp;
    }
    // Sized to the body when it is known: most replies here are small documents.
    size_t want = parser.content_length() ? static_cast<size_t>(*parser.content_length()) : kChunk;
    std::vector<char> chunk(std::clamp<size_t>(want, 1, kChunk));
    while (!parser.is_done()) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      http::read(s, buffer_, parser, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) return std::unexpected(net_error(req.url, "read reply from", ec));
      size_t n = chunk.size() - parser.get().body().size;
      if (to_sink) {
        TRY(sink->on_data(chunk.data(), n));
      } else {
        if (resp.body.size() + n > max_body)
          return make_error(ErrorCode::kTooLarge, "reply from {} is larger than {} bytes",
                            req.url.origin(), max_body);
        resp.body.append(chunk.data(), n);
      }
    }
    reusable_ = keep_alive;
    return resp;
  }

  // A body of known length straight from the socket into the sink, in large reads: the
  // parser would copy it through its own buffer in small pieces.
  template <class Stream>
  Result<void> read_raw(Stream& s, uint64_t length, const BodySink& sink, const Url& url) {
    uint64_t left = length;
    size_t buffered = std::min<uint64_t>(buffer_.size(), left);
    if (buffered > 0) {
      auto data = buffer_.data();
      TRY(sink.on_data(static_cast<const char*>(data.data()), buffered));
      buffer_.consume(buffered);
      left -= buffered;
    }
    std::vector<char> chunk(kChunk * 4);
    while (left > 0) {
      boost::system::error_code ec;
      size_t n =
          s.read_some(asio::buffer(chunk.data(), std::min<uint64_t>(chunk.size(), left)), ec);
      if (ec) return std::unexpected(net_error(url, "read body from", ec));
      TRY(sink.on_data(chunk.data(), n));
      left -= n;
    }
    return {};
  }

  std::string origin_;
  std::chrono::milliseconds timeout_;
  asio::io_context io_;
  std::unique_ptr<asio::ssl::context> ssl_;
  std::variant<std::monostate, tcp::socket, std::unique_ptr<TlsStream>> stream_;
  beast::flat_buffer buffer_;
  bool reusable_ = false;
  bool header_received_ = false;
};

HttpClient::HttpClient(TlsOptions tls, std::chrono::milliseconds timeout)
    : tls_(std::move(tls)), timeout_(timeout) {}

HttpClient::~HttpClient() = default;

Result<HttpClient::Connection*> HttpClient::connect(const Url& url) {
  if (conn_ && conn_->reusable() && conn_->origin() == url.origin()) return conn_.get();
  conn_.reset();
  auto conn = std::make_unique<Connection>(url.origin(), timeout_);
  TRY(conn->open(url, tls_));
  conn_ = std::move(conn);
  return conn_.get();
}

Result<HttpResponse> HttpClient::send(const HttpRequest& req, const BodySink* sink,
                                      size_t max_body) {
  bool fresh = !(conn_ && conn_->reusable() && conn_->origin() == req.url.origin());
  auto* conn = TRY(connect(req.url));
  auto resp = conn->send(req, sink, max_body);
  // A kept-alive connection the server closed meanwhile: retry once on a new one, unless a
  // reply had begun or a file body was partly read.
  if (!resp && !fresh && req.body_fd < 0 && !conn->header_received() &&
      resp.error().code() == ErrorCode::kUnavailable) {
    conn_.reset();
    conn = TRY(connect(req.url));
    resp = conn->send(req, sink, max_body);
  }
  if (!resp || !conn->reusable()) conn_.reset();
  return resp;
}

}  // namespace vireo::image::remote
