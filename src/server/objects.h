#pragma once
// The generic object machinery every resource kind reuses (profiles now; VMs, containers,
// networks, volumes, sandboxes later): create / get / list / replace / patch (with ETag) /
// delete, validation, lifecycle events, and rollback of creates that fail half-way or were
// interrupted by a crash.
//
// A kind supplies its rules as callbacks (ObjectKind); ObjectService owns the flow and the
// routes under /1.0/{collection}.
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "server/events.h"
#include "server/operations.h"
#include "server/router.h"
#include "store/store.h"

namespace vireo::server {

struct ObjectKind {
  std::string collection;  // URL segment and store kind: "profiles"
  std::string noun;        // in messages and events: "profile"

  // Checks a spec (the body without the read-only fields) and returns it normalized, with
  // defaults filled in. Errors are kInvalidArgument naming the field.
  std::function<Result<Json>(const Json& spec)> validate;

  // Brings a new object into being (devices, processes, files). Called after the row exists in
  // status "creating". On failure the create must undo its own steps (use Rollback); the row is
  // then removed. ctx is non-null when the kind creates asynchronously.
  std::function<Result<void>(const store::ObjectRow& row, OperationContext* ctx)> create;
  // Applies a changed spec to the live object; a failure keeps the old spec.
  std::function<Result<void>(const store::ObjectRow& before, const Json& after)> update;
  // Tears the live object down before its row is deleted; a failure keeps the object.
  std::function<Result<void>(const store::ObjectRow& row)> remove;
  // Cleans what a create interrupted by a daemon crash left behind (row still "creating").
  std::function<void(const store::ObjectRow& row)> abandon;
  // Live state shown under "state" by GET (running, addresses, usage...).
  std::function<Json(const store::ObjectRow& row)> state;

  // Creates run as operations (202 + /1.0/operations/{id}) instead of answering 201 at once.
  bool async_create = false;
};

class ObjectService {
 public:
  ObjectService(store::Store& store, EventHub& events, OperationManager& operations)
      : store_(store), events_(events), operations_(operations) {}

  // Registers the kind and its routes. Kinds are registered before the server starts.
  void register_kind(ObjectKind kind, Router& router);

  // Rolls back creates that a crash interrupted, for every registered kind. Run at start-up.
  Result<void> recover();

  // The object's JSON form: spec fields plus name, status, created_at, updated_at, state.
  Json to_json(const ObjectKind& kind, const store::ObjectRow& row) const;
  static std::string etag(const store::ObjectRow& row);

 private:
  Result<Response> list(const ObjectKind& kind, Request& req);
  Result<Response> get(const ObjectKind& kind, Request& req);
  void create(const ObjectKind& kind, Request& req, Responder respond);
  Result<Response> replace(const ObjectKind& kind, Request& req, bool merge);
  Result<Response> remove(const ObjectKind& kind, Request& req);

  // Runs the kind's create for a row in "creating"; marks it ready, or removes it on failure.
  Result<store::ObjectRow> bring_up(const ObjectKind& kind, const store::ObjectRow& row,
                                    OperationContext* ctx);
  Result<store::ObjectRow> get_checked(const ObjectKind& kind, const Request& req);
  std::string source(const ObjectKind& kind, const std::string& name) const;
  void lifecycle(const ObjectKind& kind, const std::string& name, std::string_view verb);

  store::Store& store_;
  EventHub& events_;
  OperationManager& operations_;
  std::map<std::string, std::unique_ptr<ObjectKind>> kinds_;
};

}  // namespace vireo::server
