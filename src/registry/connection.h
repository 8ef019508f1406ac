#pragma once
// Connection: the HTTP/1.1 request loop of one client connection. Parses each request header
// with Boost.Beast, hands the handler a body reader that pulls the body through Beast's parser
// in chunks (answering "Expect: 100-continue" on first use), writes the response (sendfile for
// blobs) and keeps the connection alive when both sides allow it.
#include <string>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "registry/auth.h"
#include "registry/body_decoder.h"
#include "registry/registry.h"
#include "registry/stream.h"

namespace vireo::registry {

class Connection {
 public:
  // auth may be null: everyone may do everything.
  Connection(Registry& registry, Stream& stream, const Authenticator* auth)
      : registry_(registry), stream_(stream), auth_(auth) {}
  void run();

 private:
  using HeadParser = boost::beast::http::request_parser<boost::beast::http::empty_body>;
  // One request and its response; false when the connection is to be closed.
  bool serve_one();
  bool read_head(HeadParser& head);
  static Request make_request(const HeadParser& head);
  bool finish_body(Request& req, BodyDecoder& body, bool may_read);
  bool write_response(const Request& req, const Response& res, bool keep_alive);

  Registry& registry_;
  Stream& stream_;
  const Authenticator* auth_;
  boost::beast::flat_buffer buffer_;  // header bytes read ahead
};

}  // namespace vireo::registry
