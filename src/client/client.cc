#include "client/client.h"

#include <atomic>

#include "api/error_body.h"
#include "client/transport.h"

namespace vireo::client {

namespace {

std::string object_path(const std::string& collection, const std::string& name = {}) {
  return name.empty() ? "/1.0/" + collection : "/1.0/" + collection + "/" + name;
}

}  // namespace

Result<std::unique_ptr<Client>> Client::connect(ConnectOptions options) {
  auto transport = TRY(make_transport(options));
  return std::unique_ptr<Client>(new Client(std::move(options), std::move(transport)));
}

Client::Client(ConnectOptions options, std::unique_ptr<Transport> transport)
    : options_(std::move(options)), transport_(std::move(transport)) {}

Client::~Client() = default;

Result<Reply> Client::request(std::string_view method, std::string_view path, const Json* body,
                              std::string_view if_match) {
  std::string text;
  if (body) text = dump_json(*body);
  return transport_->roundtrip(method, path, body ? &text : nullptr, if_match, options_.timeout);
}

Result<api::ServerInfo> Client::info() {
  auto reply = TRY(request("GET", "/1.0"));
  return api::server_info_from_json(reply.body);
}

Result<api::Operation> Client::operation_from(const Reply& reply) {
  return api::operation_from_json(reply.body);
}

Result<std::vector<api::Operation>> Client::operations() {
  auto reply = TRY(request("GET", "/1.0/operations"));
  std::vector<api::Operation> out;
  if (!reply.body.is_array()) return make_error(ErrorCode::kIo, "operations: expected a list");
  for (const auto& j : reply.body) out.push_back(TRY(api::operation_from_json(j)));
  return out;
}

Result<api::Operation> Client::operation(const std::string& id) {
  return operation_from(TRY(request("GET", "/1.0/operations/" + id)));
}

Result<api::Operation> Client::wait_operation(const std::string& id, std::chrono::seconds timeout) {
  std::string target = fmt::format("/1.0/operations/{}?wait={}", id, timeout.count());
  auto reply = TRY(transport_->roundtrip(
      "GET", target, nullptr, {},
      options_.timeout + std::chrono::duration_cast<std::chrono::milliseconds>(timeout)));
  return operation_from(reply);
}

Result<api::Operation> Client::cancel_operation(const std::string& id) {
  return operation_from(TRY(request("DELETE", "/1.0/operations/" + id)));
}

Result<api::Operation> Client::follow_operation(
    const std::string& id, const std::function<void(const api::Operation&)>& on_update) {
  // Subscribe first, then read the current state, so no change falls between the two.
  std::optional<api::Operation> last;
  Result<void> streamed = watch_events(
      {"operation"},
      [&](const api::Event& event) {
        auto op = api::operation_from_json(event.metadata);
        if (!op || op->id != id) return true;
        last = *op;
        if (on_update) on_update(*op);
        return !op->done();
      },
      [&] {
        auto now = operation(id);
        if (!now) return false;
        last = *now;
        if (on_update) on_update(*now);
        return !now->done();
      });
  if (last && last->done()) return *last;
  // The stream is gone (or the operation finished before we subscribed): ask directly.
  auto now = TRY(wait_operation(id, std::chrono::seconds(3600)));
  if (!streamed && !now.done()) return std::unexpected(streamed.error());
  return now;
}

Result<std::vector<Json>> Client::list(const std::string& collection) {
  auto reply = TRY(request("GET", object_path(collection)));
  if (!reply.body.is_array()) return make_error(ErrorCode::kIo, "{}: expected a list", collection);
  return reply.body.get<std::vector<Json>>();
}

Result<Object> Client::get(const std::string& collection, const std::string& name) {
  auto reply = TRY(request("GET", object_path(collection, name)));
  return Object{std::move(reply.body), std::move(reply.etag)};
}

Result<Json> Client::create(const std::string& collection, const Json& body,
                            const std::function<void(const api::Operation&)>& on_update) {
  auto reply = TRY(request("POST", object_path(collection), &body));
  if (reply.status != 202) return reply.body;
  auto op = TRY(operation_from(reply));
  auto done = TRY(follow_operation(op.id, on_update));
  if (done.status != api::OperationStatus::kSuccess)
    return std::unexpected(Error(api::error_code_for_status(done.error_code), done.error));
  return done.result;
}

Result<Object> Client::patch(const std::string& collection, const std::string& name,
                             const Json& patch, const std::string& etag) {
  auto reply = TRY(request("PATCH", object_path(collection, name), &patch, etag));
  return Object{std::move(reply.body), std::move(reply.etag)};
}

Result<Object> Client::replace(const std::string& collection, const std::string& name,
                               const Json& spec, const std::string& etag) {
  auto reply = TRY(request("PUT", object_path(collection, name), &spec, etag));
  return Object{std::move(reply.body), std::move(reply.etag)};
}

Result<void> Client::remove(const std::string& collection, const std::string& name) {
  TRY(request("DELETE", object_path(collection, name)));
  return {};
}

Result<void> Client::watch_events(const std::vector<std::string>& types,
                                  const std::function<bool(const api::Event&)>& on_event,
                                  const std::function<bool()>& ready) {
  std::string target = "/1.0/events";
  if (!types.empty()) {
    target += "?type=";
    for (size_t i = 0; i < types.size(); ++i) target += (i ? "," : "") + types[i];
  }
  return transport_->websocket(
      target,
      [&](std::string_view text) {
        auto json = parse_json(text);
        if (!json) return true;
        auto event = api::event_from_json(*json);
        return event ? on_event(*event) : true;
      },
      ready);
}

Result<std::unique_ptr<MessageStream>> Client::open_stream(const std::string& target,
                                                           MessageHandlers handlers) {
  return transport_->open_stream(target, std::move(handlers));
}

}  // namespace vireo::client
