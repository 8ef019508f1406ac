#include "registry/connection.h"

#include <chrono>
#include <cstring>
#include <limits>
#include <sstream>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "base/log.h"
#include "registry/auth.h"
#include "registry/body_decoder.h"
#include "registry/routes.h"

namespace vireo::registry {

namespace http = boost::beast::http;

namespace {

constexpr size_t kDrainLimit = 1 << 20;

void split_target(std::string_view target, Request& req) {
  auto q = target.find('?');
  req.path = std::string(target.substr(0, q));
  if (q == std::string_view::npos) return;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view kv = rest.substr(0, amp);
    auto eq = kv.find('=');
    std::string key = percent_decode_query(kv.substr(0, eq));
    req.query[key] = eq == std::string_view::npos ? "" : percent_decode_query(kv.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The response header as Beast formats it.
std::string header_text(const Response& r, bool keep_alive, uint64_t length) {
  http::response_header<> h;
  h.version(11);
  h.result(unsigned(r.status));
  h.set("Docker-Distribution-API-Version", "registry/2.0");
  for (const auto& [k, v] : r.headers) h.insert(k, v);
  h.set(http::field::content_length, std::to_string(length));
  if (!keep_alive) h.set(http::field::connection, "close");
  std::ostringstream os;
  os << h;
  return os.str();
}

}  // namespace

void Connection::run() {
  while (serve_one()) {
  }
}

bool Connection::read_head(HeadParser& head) {
  boost::system::error_code ec;
  head.header_limit(64 * 1024);
  head.body_limit(std::numeric_limits<std::uint64_t>::max());  // boost::none misbehaves in 1.74
  http::read_header(stream_, buffer_, head, ec);
  if (!ec) return true;
  if (ec != http::error::end_of_stream && ec != boost::asio::error::eof &&
      ec != boost::asio::error::timed_out && ec != boost::asio::error::connection_reset) {
    Response r =
        Response::error(RegistryError(Code::kUnsupported, "malformed HTTP request", ec.message()));
    r.status = ec == http::error::header_limit ? 431 : 400;
    std::string text = header_text(r, false, r.body.size()) + r.body;
    (void)stream_.write_all(text.data(), text.size());
  }
  return false;
}

Request Connection::make_request(const HeadParser& head) {
  const auto& msg = head.get();
  Request req;
  req.method = std::string(msg.method_string());
  split_target(msg.target(), req);
  for (const auto& f : msg) req.headers[lower(f.name_string())] = std::string(f.value());
  if (auto cl = head.content_length()) req.content_length = *cl;
  req.has_body = !head.is_done();
  return req;
}

// After the handler: reads what is left of a small body so that the connection can serve the
// next request; false when the connection must close instead.
bool Connection::finish_body(Request& req, BodyDecoder& body, bool may_read) {
  if (body.done()) return !body.failed();
  if (!may_read) return false;  // "Expect: 100-continue" not answered: the body never comes
  char sink[65536];
  size_t drained = 0;
  while (!body.done() && drained < kDrainLimit) {
    auto n = req.read_body(sink, sizeof sink);
    if (!n || *n == 0) break;
    drained += *n;
  }
  return body.done() && !body.failed();
}

bool Connection::write_response(const Request& req, const Response& res, bool keep_alive) {
  bool head_req = req.method == "HEAD";
  uint64_t length = res.head_length ? *res.head_length
                    : res.file      ? res.file_length
                                    : res.body.size();
  std::string text = header_text(res, keep_alive, length);
  if (!head_req && !res.file) text += res.body;
  if (!stream_.write_all(text.data(), text.size())) return false;
  if (head_req || !res.file || res.file_length == 0) return true;
  auto r = stream_.send_file(res.file.get(), res.file_offset, res.file_length);
  if (!r) spdlog::debug("send {}: {}", req.path, r.error().message());
  return r.has_value();
}

bool Connection::serve_one() {
  HeadParser head;
  if (!read_head(head)) return false;
  Request req = make_request(head);
  auto leftover = buffer_.data();
  BodyDecoder body(stream_, std::string(static_cast<const char*>(leftover.data()), leftover.size()),
                   req.content_length, head.chunked());
  buffer_.consume(buffer_.size());
  bool expect_continue = lower(req.header("expect")) == "100-continue";
  req.read_body = [&](char* buf, size_t cap) -> RegResult<size_t> {
    if (expect_continue) {
      expect_continue = false;
      static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      TRY(stream_.write_all(kContinue, sizeof kContinue - 1));
    }
    return body.read(buf, cap);
  };
  auto started = std::chrono::steady_clock::now();
  std::optional<Response> refused = auth_ ? auth_->check(req) : std::nullopt;
  Response res = refused ? std::move(*refused) : registry_.handle(req);
  bool keep_alive = head.get().keep_alive() && finish_body(req, body, !expect_continue);
  spdlog::debug("{} {} -> {} in {} ms", req.method, req.path, res.status,
                std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - started)
                    .count());
  if (!write_response(req, res, keep_alive)) return false;
  if (!keep_alive) {
    if (!body.done()) stream_.linger_close();
    return false;
  }
  std::string rest = body.take_leftover();  // the start of a pipelined request
  if (!rest.empty()) {
    auto mb = buffer_.prepare(rest.size());
    std::memcpy(mb.data(), rest.data(), rest.size());
    buffer_.commit(rest.size());
  }
  return true;
}

}  // namespace vireo::registry
