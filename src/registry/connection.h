#pragma once
// Connection: the HTTP/1.1 request loop of one client connection. Parses each request header
// with Boost.Beast, hands the handler a body reader that pulls the body through Beast's parser
// in chunks (answering "Expect: 100-continue" on first use), writes the response (sendfile for
// blobs) and keeps the connection alive when both sides allow it.
#include <string>

#include "registry/registry.h"
#include "registry/stream.h"

namespace vireo::registry {

class Connection {
 public:
  Connection(Registry& registry, Stream& stream, const std::string& htpasswd)
      : registry_(registry), stream_(stream), htpasswd_(htpasswd) {}
  void run();

 private:
  Registry& registry_;
  Stream& stream_;
  const std::string& htpasswd_;
};

}  // namespace vireo::registry
