// Engine::update: new resource limits for a container, live and saved.
#include "base/file.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "containers/engine.h"
#include "containers/engine_impl.h"
#include "containers/rootless.h"

namespace vireo::containers {

namespace {

constexpr int64_t kMinMemory = 6 << 20;  // as Docker: less cannot start a process

Result<int64_t> positive_int(const Json& v, const std::string& field) {
  if (!v.is_number_integer() || v.get<int64_t>() <= 0)
    return make_error(ErrorCode::kInvalidArgument, "field '{}' must be a positive integer", field);
  return v.get<int64_t>();
}

}  // namespace

Result<UpdateRequest> parse_update_request(const Json& body) {
  if (!body.is_object())
    return make_error(ErrorCode::kInvalidArgument,
                      "body must be {\"memory\"?, \"cpus\"?, \"pids_limit\"?}");
  UpdateRequest u;
  for (const auto& [k, v] : body.items()) {
    if (k == "memory") {
      u.memory = TRY(positive_int(v, k));
      if (*u.memory < kMinMemory)
        return make_error(ErrorCode::kInvalidArgument, "memory {} is below the minimum of 6 MiB",
                          format_bytes(static_cast<uint64_t>(*u.memory)));
    } else if (k == "cpus") {
      if (!v.is_number() || v.get<double>() <= 0)
        return make_error(ErrorCode::kInvalidArgument, "field 'cpus' must be a positive number");
      u.cpus = v.get<double>();
    } else if (k == "pids_limit") {
      u.pids_limit = TRY(positive_int(v, k));
    } else {
      return make_error(ErrorCode::kInvalidArgument, "unknown field '{}'", k);
    }
  }
  if (!u.memory && !u.cpus && !u.pids_limit)
    return make_error(ErrorCode::kInvalidArgument,
                      "nothing to update: give memory, cpus or pids_limit");
  return u;
}

Result<Container> Engine::update(const std::string& name, const UpdateRequest& u) {
  auto r = TRY(impl_->find(name));
  std::lock_guard action(r->action);
  CreateRequest req;
  bool running = false;
  std::string id;
  {
    std::lock_guard lock(impl_->mu);
    req = r->req;
    running = r->c.state == State::kRunning;
    id = r->c.id;
  }
  if (u.memory) req.memory = u.memory;
  if (u.cpus) req.cpus = u.cpus;
  if (u.pids_limit) req.pids_limit = u.pids_limit;
  TRY(check_rootless(req));  // limits need a delegated cgroup
  Json resources = resources_json(req);
  if (running) {
    auto p = run_process(
        {impl_->o.runtime, "--root", impl_->runtime_root.string(), "update", "-r", "-", id},
        {.input = resources.dump(), .timeout = std::chrono::seconds(10)});
    if (!p) return std::unexpected(p.error());
    if (!p->ok())
      return make_error(ErrorCode::kConflict, "update container {}: {}", r->c.name,
                        std::string(trim(p->err)));
  }
  // The bundle's config.json too: the next start runs with the new limits.
  auto config_path = r->dir / "bundle" / "config.json";
  Json config = TRY(parse_json(TRY(read_file(config_path))));
  for (const auto& [k, v] : resources.items()) config["linux"]["resources"][k] = v;
  TRY(write_file_atomic(config_path, config.dump(2) + "\n", 0600));
  TRY(write_file_atomic(r->dir / "spec.json", to_json(req).dump(2) + "\n", 0600));
  std::lock_guard lock(impl_->mu);
  r->req = req;
  r->c.config = to_json(req);
  return r->c;
}

}  // namespace vireo::containers
