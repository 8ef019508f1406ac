#pragma once
// Client: the C++ API to vireod, used by the `vireo` CLI and by embedders. Speaks HTTP/1.1 to
// the Unix socket, or HTTPS to a remote vireod with a client certificate or a bearer token.
//
// Not thread-safe: one Client per thread. Calls are synchronous; the connection is kept open
// between calls and re-established when the server closed it.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "api/event.h"
#include "api/operation.h"
#include "api/server_info.h"
#include "base/json.h"
#include "base/result.h"

namespace vireo::client {

inline constexpr const char* kDefaultSocket = "/run/vireo/vireo.sock";

struct ConnectOptions {
  std::string socket_path = kDefaultSocket;
  std::string remote;       // "HOST:PORT": use HTTPS instead of the socket
  std::string token;        // bearer token for remote
  std::string client_cert;  // client certificate (PEM) for remote
  std::string client_key;
  std::string server_ca;  // certificate(s) to verify the remote server with (required)
  std::chrono::milliseconds timeout{60000};
};

struct Reply {
  int status = 0;
  Json body;
  std::string etag;
  std::string location;
};

// An object of any kind with the ETag to make conditional changes with.
struct Object {
  Json data;
  std::string etag;
};

// A WebSocket of binary messages both ways (a container's attach), served by a thread of its
// own until it ends. send and close may be called from any thread; the handlers run on the
// stream's thread. The destructor closes the stream and joins the thread.
class MessageStream {
 public:
  virtual ~MessageStream() = default;
  // Queued and written in order.
  virtual void send(std::string message) = 0;
  // A normal close once what is queued is written.
  virtual void close() = 0;
};
struct MessageHandlers {
  std::function<void(std::string_view message)> on_message;
  // Once, when the stream ended: the reason the server gave with its close, or the error.
  std::function<void(Result<std::string> reason)> on_closed;
};

class Client {
 public:
  static Result<std::unique_ptr<Client>> connect(ConnectOptions options);
  ~Client();

  // Any request; an HTTP error status becomes an Error carrying the server's message.
  Result<Reply> request(std::string_view method, std::string_view path, const Json* body = nullptr,
                        std::string_view if_match = {});

  Result<api::ServerInfo> info();

  Result<std::vector<api::Operation>> operations();
  Result<api::Operation> operation(const std::string& id);
  // Long-polls until the operation is done or timeout passes; returns it as it is then.
  Result<api::Operation> wait_operation(const std::string& id, std::chrono::seconds timeout);
  Result<api::Operation> cancel_operation(const std::string& id);
  // Follows an operation through /1.0/events until it is done, calling on_update on each
  // change (progress bars). Returns the final state.
  Result<api::Operation> follow_operation(
      const std::string& id, const std::function<void(const api::Operation&)>& on_update);

  // Generic objects under /1.0/{collection}.
  Result<std::vector<Json>> list(const std::string& collection);
  Result<Object> get(const std::string& collection, const std::string& name);
  // Creates; for kinds that create asynchronously, follows the operation to its end.
  Result<Json> create(const std::string& collection, const Json& body,
                      const std::function<void(const api::Operation&)>& on_update = {});
  // Merge-patches (RFC 7386); with a non-empty etag, fails with kPreconditionFailed if the
  // object changed since it was read.
  Result<Object> patch(const std::string& collection, const std::string& name, const Json& patch,
                       const std::string& etag = {});
  Result<Object> replace(const std::string& collection, const std::string& name, const Json& spec,
                         const std::string& etag = {});
  Result<void> remove(const std::string& collection, const std::string& name);

  // Streams events of the given types (empty: all) until on_event returns false or the
  // connection ends. ready runs once the subscription is in place; returning false from it
  // ends the stream at once.
  Result<void> watch_events(const std::vector<std::string>& types,
                            const std::function<bool(const api::Event&)>& on_event,
                            const std::function<bool()>& ready = {});

  // Opens a WebSocket of binary messages on target, returning once the server accepted it (its
  // refusal is the error).
  Result<std::unique_ptr<MessageStream>> open_stream(const std::string& target,
                                                     MessageHandlers handlers);

  class Transport;

 private:
  Client(ConnectOptions options, std::unique_ptr<Transport> transport);
  Result<api::Operation> operation_from(const Reply& reply);

  ConnectOptions options_;
  std::unique_ptr<Transport> transport_;
};

}  // namespace vireo::client
