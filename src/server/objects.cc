#include "server/objects.h"

#include "base/ids.h"
#include "base/log.h"
#include "base/strings.h"

namespace vireo::server {

namespace {

constexpr const char* kCreating = "creating";
constexpr const char* kReady = "ready";

// Fields the server owns: accepted in a body only when unchanged, never stored in the spec.
const std::vector<std::string> kReadOnlyFields = {"name",       "status", "created_at",
                                                  "updated_at", "state",  "etag"};

Result<Json> strip_read_only(Json body, const std::string& name) {
  if (!body.is_object())
    return make_error(ErrorCode::kInvalidArgument, "request body must be a JSON object");
  if (auto it = body.find("name"); it != body.end() && !name.empty() && *it != name)
    return make_error(ErrorCode::kInvalidArgument, "renaming is not supported: name is '{}'", name);
  for (const auto& f : kReadOnlyFields) body.erase(f);
  return body;
}

// If-Match: '"tag"', 'W/"tag"' or '*'.
bool if_match_satisfied(const std::string& header, const std::string& etag) {
  if (header.empty() || header == "*") return true;
  for (auto part : split(header, ',')) {
    std::string_view t = trim(part);
    if (t.starts_with("W/")) t.remove_prefix(2);
    if (t == etag) return true;
  }
  return false;
}

}  // namespace

std::string ObjectService::etag(const store::ObjectRow& row) {
  // The creation time keeps a tag from matching a deleted-and-recreated object of the same name.
  return fmt::format("\"{}-{}\"",
                     sha256_hex(row.kind + "/" + row.name + "@" + row.created_at).substr(0, 12),
                     row.revision);
}

std::string ObjectService::source(const ObjectKind& kind, const std::string& name) const {
  return fmt::format("/1.0/{}/{}", kind.collection, name);
}

void ObjectService::lifecycle(const ObjectKind& kind, const std::string& name,
                              std::string_view verb) {
  events_.publish("lifecycle", api::lifecycle_metadata(fmt::format("{}-{}", kind.noun, verb),
                                                       source(kind, name)));
}

Json ObjectService::to_json(const ObjectKind& kind, const store::ObjectRow& row) const {
  Json j = row.spec.is_object() ? row.spec : Json::object();
  j["name"] = row.name;
  j["status"] = row.status;
  j["created_at"] = row.created_at;
  j["updated_at"] = row.updated_at;
  if (kind.state && row.status == kReady) j["state"] = kind.state(row);
  return j;
}

void ObjectService::register_kind(ObjectKind k, Router& router) {
  auto owned = std::make_unique<ObjectKind>(std::move(k));
  const ObjectKind* kind = owned.get();
  const std::string base = "/1.0/" + kind->collection;
  kinds_[kind->collection] = std::move(owned);
  router.add_sync(Method::kGet, base, [this, kind](Request& r) { return list(*kind, r); });
  router.add(Method::kPost, base,
             [this, kind](Request& r, Responder respond) { create(*kind, r, std::move(respond)); });
  router.add_sync(Method::kGet, base + "/{name}",
                  [this, kind](Request& r) { return get(*kind, r); });
  router.add_sync(Method::kPut, base + "/{name}",
                  [this, kind](Request& r) { return replace(*kind, r, false); });
  router.add_sync(Method::kPatch, base + "/{name}",
                  [this, kind](Request& r) { return replace(*kind, r, true); });
  router.add_sync(Method::kDelete, base + "/{name}",
                  [this, kind](Request& r) { return remove(*kind, r); });
}

Result<void> ObjectService::recover() {
  for (const auto& [collection, kind] : kinds_) {
    for (const auto& row : TRY(store_.list_objects(collection))) {
      if (row.status != kCreating) continue;
      spdlog::warn("rolling back {} '{}': its create was interrupted", kind->noun, row.name);
      if (kind->abandon) kind->abandon(row);
      TRY(store_.delete_object(collection, row.name));
    }
  }
  return {};
}

Result<Response> ObjectService::list(const ObjectKind& kind, Request&) {
  Json items = Json::array();
  for (const auto& row : TRY(store_.list_objects(kind.collection)))
    items.push_back(to_json(kind, row));
  return Response::json(std::move(items));
}

// The store names rows by collection ("profiles"); users read the noun ("profile").
static Error in_words_of(const ObjectKind& kind, const std::string& name, Error e) {
  if (e.code() == ErrorCode::kNotFound)
    return Error(e.code(), fmt::format("{} '{}' not found", kind.noun, name));
  if (e.code() == ErrorCode::kAlreadyExists)
    return Error(e.code(), fmt::format("{} '{}' already exists", kind.noun, name));
  return e;
}

Result<store::ObjectRow> ObjectService::get_checked(const ObjectKind& kind, const Request& req) {
  const std::string& name = req.params.at("name");
  TRY(validate_name(name, kind.noun));
  auto row = store_.get_object(kind.collection, name);
  if (!row) return std::unexpected(in_words_of(kind, name, row.error()));
  return row;
}

Result<Response> ObjectService::get(const ObjectKind& kind, Request& req) {
  auto row = TRY(get_checked(kind, req));
  return std::move(Response::json(to_json(kind, row)).header("ETag", etag(row)));
}

Result<store::ObjectRow> ObjectService::bring_up(const ObjectKind& kind,
                                                 const store::ObjectRow& row,
                                                 OperationContext* ctx) {
  if (kind.create) {
    if (auto made = kind.create(row, ctx); !made) {
      if (auto gone = store_.delete_object(kind.collection, row.name); !gone)
        spdlog::error("rollback of {} '{}': {}", kind.noun, row.name, gone.error().message());
      return std::unexpected(std::move(made.error()));
    }
  }
  auto ready = TRY(store_.update_object(kind.collection, row.name, row.spec, kReady, row.revision));
  lifecycle(kind, row.name, "created");
  return ready;
}

void ObjectService::create(const ObjectKind& kind, Request& req, Responder respond) {
  auto prepared = [&]() -> Result<std::pair<std::string, Json>> {
    Json body = TRY(req.json_body());
    if (!body.is_object())
      return make_error(ErrorCode::kInvalidArgument, "request body must be a JSON object");
    auto name_field = body.find("name");
    if (name_field == body.end() || !name_field->is_string())
      return make_error(ErrorCode::kInvalidArgument, "field 'name' is required (a string)");
    std::string name = name_field->get<std::string>();
    TRY(validate_name(name, kind.noun));
    Json spec = TRY(strip_read_only(std::move(body), name));
    spec = TRY(kind.validate ? kind.validate(spec) : Result<Json>(spec));
    return std::pair{std::move(name), std::move(spec)};
  }();
  if (!prepared) return respond(Response::error(prepared.error()));
  auto [name, spec] = std::move(*prepared);

  // The row claims the name at once, so a duplicate fails now and not inside an operation.
  auto claimed = store_.insert_object(kind.collection, name, spec, kCreating);
  if (!claimed) return respond(Response::error(in_words_of(kind, name, claimed.error())));
  if (!kind.async_create) {
    auto row = bring_up(kind, *claimed, nullptr);
    if (!row) return respond(Response::error(row.error()));
    Response r = Response::json(to_json(kind, *row), 201);
    r.header("ETag", etag(*row)).header("Location", source(kind, name));
    return respond(std::move(r));
  }
  auto op = operations_.start(fmt::format("Creating {} {}", kind.noun, name),
                              Json{{kind.collection, {source(kind, name)}}}, Cancellable::kYes,
                              [this, &kind, row = *claimed](OperationContext& ctx) -> Result<Json> {
                                return to_json(kind, TRY(bring_up(kind, row, &ctx)));
                              });
  respond(accepted(op));
}

Result<Response> ObjectService::replace(const ObjectKind& kind, Request& req, bool merge) {
  auto row = TRY(get_checked(kind, req));
  if (row.status == kCreating)
    return make_error(ErrorCode::kConflict, "{} '{}' is still being created", kind.noun, row.name);
  if (!if_match_satisfied(req.if_match, etag(row)))
    return make_error(ErrorCode::kPreconditionFailed,
                      "{} '{}' has changed since it was read (ETag {} does not match); fetch it "
                      "again and retry",
                      kind.noun, row.name, req.if_match);
  Json body = TRY(strip_read_only(TRY(req.json_body()), row.name));
  Json spec = body;
  if (merge) {
    spec = row.spec;
    merge_patch(spec, body);
  }
  spec = TRY(kind.validate ? kind.validate(spec) : Result<Json>(spec));
  if (kind.update) TRY(kind.update(row, spec));
  auto updated =
      TRY(store_.update_object(kind.collection, row.name, spec, row.status, row.revision));
  lifecycle(kind, row.name, "updated");
  return std::move(Response::json(to_json(kind, updated)).header("ETag", etag(updated)));
}

Result<Response> ObjectService::remove(const ObjectKind& kind, Request& req) {
  auto row = TRY(get_checked(kind, req));
  if (row.status == kCreating)
    return make_error(ErrorCode::kConflict, "{} '{}' is still being created", kind.noun, row.name);
  if (!if_match_satisfied(req.if_match, etag(row)))
    return make_error(ErrorCode::kPreconditionFailed,
                      "{} '{}' has changed since it was read (ETag {} does not match)", kind.noun,
                      row.name, req.if_match);
  if (kind.remove) TRY(kind.remove(row));
  TRY(store_.delete_object(kind.collection, row.name, row.revision));
  lifecycle(kind, row.name, "deleted");
  return Response::json(Json::object());
}

}  // namespace vireo::server
