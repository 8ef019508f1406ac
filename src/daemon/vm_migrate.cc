// Live migration between two vireods (vireo vm migrate NAME --to TARGET). The source vireod
// drives it as a client of the target's API:
//   1. POST TARGET/1.0/vms/NAME/incoming {"definition"}: the target stores the definition and
//      starts QEMU with -incoming defer, listening on a unix socket in its run directory (same
//      host) — the answer is the migration URI;
//   2. the source migrates (compute::migrate: pre-copy, downtime limit 300 ms);
//   3. PUT TARGET/1.0/vms/NAME/state resume: the guest runs there (QEMU's `cont` during the
//      last incoming step means "run once loaded");
//   4. the source ends its paused QEMU and forgets the VM.
// Any failure before 3 aborts the target (DELETE TARGET/1.0/vms/NAME/incoming) and leaves the
// guest running on the source. Disks must be shared between the two (image files both see);
// volume disks and NICs are refused for now (the copy exists in the compute library:
// compute::mirror_disks; the target's volumes and TAPs are not made yet).
#include "base/log.h"
#include "base/strings.h"
#include "client/client.h"
#include "compute/migration.h"
#include "daemon/vms.h"

namespace vireo::daemon {

namespace {

constexpr const char* kCollection = "vms";
constexpr auto kIncomingTimeout = std::chrono::seconds(60);

Result<void> check_migratable(const Json& spec) {
  for (const auto& d : spec.value("disks", Json::array()))
    if (d.contains("volume"))
      return make_error(ErrorCode::kInvalidArgument,
                        "volume disks do not migrate yet (only image files both hosts see); "
                        "detach {} first",
                        d["volume"].get<std::string>());
  if (!spec.value("nics", Json::array()).empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "VMs with NICs do not migrate yet; detach them (vireo vm nic rm) first");
  return {};
}

// The result of the operation a target request answered with.
Result<Json> target_operation(client::Client& target, const char* method, const std::string& path,
                              const Json* body) {
  auto reply = TRY(target.request(method, path, body));
  auto op = TRY(api::operation_from_json(reply.body));
  auto done = TRY(target.wait_operation(op.id, kIncomingTimeout));
  if (done.status != api::OperationStatus::kSuccess)
    return make_error(ErrorCode::kUnavailable, "the target: {}",
                      done.error.empty() ? "the operation did not finish" : done.error);
  return done.result;
}

Result<client::ConnectOptions> target_options(const Json& target) {
  if (!target.is_object())
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'target' must be {\"socket\": PATH} or {\"remote\": HOST:PORT, "
                      "\"token\", \"ca\"}");
  client::ConnectOptions o;
  if (target.contains("socket") && target["socket"].is_string()) {
    o.socket_path = target["socket"].get<std::string>();
  } else if (target.contains("remote") && target["remote"].is_string()) {
    o.remote = target["remote"].get<std::string>();
    o.token = target.value("token", "");
    o.server_ca = target.value("ca", "");
  } else {
    return make_error(ErrorCode::kInvalidArgument, "field 'target' needs 'socket' or 'remote'");
  }
  return o;
}

}  // namespace

Result<Json> VmManager::receive_incoming(const std::string& name, const Json& body) {
  std::lock_guard serial(action_mutex_);
  if (!body.is_object() || !body.contains("definition"))
    return make_error(ErrorCode::kInvalidArgument, "body must be {\"definition\": VM}");
  Json spec = TRY(validate_vm(body["definition"]));
  TRY(check_migratable(spec));
  TRY(store_.insert_object(kCollection, name, spec, "ready"));
  auto undo = [&] {
    (void)stop(name, true, 0);
    (void)store_.delete_object(kCollection, name);
  };
  auto started = start(name, StartMode::kIncoming);
  auto process = started ? running(name) : nullptr;
  const std::string uri = "unix:" + (run_dir(name) / "migration.sock").string();
  Result<void> listening = process   ? compute::start_incoming(process->qmp(), uri)
                           : started ? make_error(ErrorCode::kUnavailable, "QEMU exited")
                                     : Result<void>(std::unexpected(started.error()));
  if (!listening) {
    undo();
    return std::unexpected(std::move(listening.error()).with_context("receive VM " + name));
  }
  lifecycle(name, "incoming");
  return Json{{"name", name}, {"uri", uri}};
}

Result<Json> VmManager::abort_incoming(const std::string& name) {
  std::lock_guard serial(action_mutex_);
  auto process = running(name);
  if (process && TRY(process->status()) != "inmigrate")
    return make_error(ErrorCode::kConflict, "VM '{}' is not waiting for a migration", name);
  (void)stop(name, true, 0);
  auto row = TRY(store_.get_object(kCollection, name));
  TRY(remove(row));
  TRY(store_.delete_object(kCollection, name));
  return Json{{"name", name}};
}

Result<Json> VmManager::migrate_to(const std::string& name, const Json& target_json) {
  std::lock_guard serial(action_mutex_);
  auto process = running(name);
  if (!process) return make_error(ErrorCode::kConflict, "VM '{}' is not running", name);
  auto row = TRY(store_.get_object(kCollection, name));
  TRY(check_migratable(row.spec));
  auto target = TRY_CTX(client::Client::connect(TRY(target_options(target_json))), "the target");
  const std::string path = "/1.0/vms/" + name;
  Json request = {{"definition", row.spec}};
  Json incoming = TRY(target_operation(*target, "POST", path + "/incoming", &request));
  auto stats = compute::migrate(process->qmp(), incoming.value("uri", ""));
  if (!stats) {
    if (auto r = target_operation(*target, "DELETE", path + "/incoming", nullptr); !r)
      spdlog::warn("vm {}: abort on the target: {}", name, r.error().message());
    return std::unexpected(std::move(stats.error()).with_context("migrate VM " + name));
  }
  Json resume = {{"action", "resume"}};
  TRY_CTX(target_operation(*target, "PUT", path + "/state", &resume),
          "migrated VM {} did not resume on the target", name);
  // The guest runs there: end the paused copy here and forget the VM.
  (void)stop(name, true, 0);
  TRY(remove(row));
  TRY(store_.delete_object(kCollection, name));
  Json result = {{"name", name},
                 {"total_ms", stats->total_ms},
                 {"downtime_ms", stats->downtime_ms},
                 {"ram_transferred", stats->ram_transferred}};
  spdlog::info("vm {}: migrated in {} ms, downtime {} ms", name, stats->total_ms,
               stats->downtime_ms);
  lifecycle(name, "migrated", result);
  return result;
}

void VmManager::add_migration_routes(server::Router& router) {
  auto start_op = [this](const std::string& what, const std::string& name,
                         std::function<Result<Json>()> work) {
    return server::accepted(operations_.start(
        fmt::format("{} VM {}", what, name), Json{{"vms", {"/1.0/vms/" + name}}},
        server::Cancellable::kNo, [work](server::OperationContext&) { return work(); }));
  };
  router.add_sync(server::Method::kPost, "/1.0/vms/{name}/migrate",
                  [this, start_op](server::Request& req) -> Result<server::Response> {
                    const std::string name = req.params["name"];
                    TRY(store_.get_object(kCollection, name));
                    Json body = TRY(req.json_body());
                    if (!body.is_object() || !body.contains("target"))
                      return make_error(ErrorCode::kInvalidArgument,
                                        "body must be {\"target\": {\"socket\": PATH} or "
                                        "{\"remote\": HOST:PORT, ...}}");
                    TRY(target_options(body["target"]));
                    return start_op("migrate", name, [this, name, target = body["target"]] {
                      return migrate_to(name, target);
                    });
                  });
  router.add_sync(server::Method::kPost, "/1.0/vms/{name}/incoming",
                  [this, start_op](server::Request& req) -> Result<server::Response> {
                    const std::string name = req.params["name"];
                    TRY(validate_name(name, "VM"));
                    if (store_.get_object(kCollection, name))
                      return make_error(ErrorCode::kAlreadyExists,
                                        "a VM named '{}' exists here already", name);
                    Json body = TRY(req.json_body());
                    return start_op("receive", name,
                                    [this, name, body] { return receive_incoming(name, body); });
                  });
  router.add_sync(server::Method::kDelete, "/1.0/vms/{name}/incoming",
                  [this, start_op](server::Request& req) -> Result<server::Response> {
                    const std::string name = req.params["name"];
                    TRY(store_.get_object(kCollection, name));
                    return start_op("abort the migration of", name,
                                    [this, name] { return abort_incoming(name); });
                  });
}

}  // namespace vireo::daemon
