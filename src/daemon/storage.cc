#include "daemon/storage.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include <fmt/ranges.h>

#include "api/event.h"
#include "base/fd.h"
#include "base/file.h"
#include "base/log.h"
#include "base/subprocess.h"

namespace vireo::daemon {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr auto kStartTimeout = 10s;

// vireo-storaged's codes map onto the API's statuses directly, except a full pool, which is a
// state conflict (409) rather than an oversized request. Its "vol.create: " prefix names a
// control op the API caller never sent, so it goes.
Error api_error(const Error& e, const std::string& op) {
  std::string message = e.message();
  if (message.starts_with(op + ": ")) message.erase(0, op.size() + 2);
  return Error(e.code() == ErrorCode::kTooLarge ? ErrorCode::kConflict : e.code(), message);
}

Result<std::string> path_name(const server::Request& req, const char* key) {
  auto it = req.params.find(key);
  if (it == req.params.end() || it->second.empty())
    return make_error(ErrorCode::kInvalidArgument, "missing {} name", key);
  return it->second;
}

// Copies the listed fields of an API body into a storaged request, checking their types.
Result<void> copy_fields(const Json& body, Json& request, std::initializer_list<const char*> keys) {
  if (!body.is_object()) return make_error(ErrorCode::kInvalidArgument, "body must be an object");
  for (const char* key : keys) {
    if (!body.contains(key)) continue;
    const Json& v = body[key];
    bool size_like = std::string_view(key) == "size";
    if (!v.is_string() && !(size_like && v.is_number_unsigned()))
      return make_error(ErrorCode::kInvalidArgument, "field '{}' must be a {}", key,
                        size_like ? "size such as \"10G\" or a number of bytes" : "string");
    request[key] = v;
  }
  return {};
}

Result<std::string> required_string(const Json& body, const char* key) {
  if (!body.is_object() || !body.contains(key) || !body[key].is_string() ||
      body[key].get<std::string>().empty())
    return make_error(ErrorCode::kInvalidArgument, "field '{}' is required", key);
  return body[key].get<std::string>();
}

}  // namespace

StoragePaths storage_paths(const fs::path& root) {
  auto state = root / "storage";
  return {.state = state,
          .control = state / "control.sock",
          .nbd = state / "nbd.sock",
          .pidfile = state / "storaged.pid",
          .log = state / "storaged.log"};
}

StorageManager::StorageManager(fs::path root, server::EventHub& events,
                               server::OperationManager& operations)
    : root_(std::move(root)),
      paths_(storage_paths(root_)),
      events_(events),
      operations_(operations) {}

Result<void> StorageManager::start() {
  auto pools = TRY(call({{"op", "pool.ls"}}));
  if (!pools.value("pools", Json::array()).empty()) return {};
  auto path = paths_.state / "pools" / "default";
  TRY_CTX(
      call({{"op", "pool.create"}, {"name", "default"}, {"type", "dir"}, {"path", path.string()}}),
      "create the default pool");
  spdlog::info("created storage pool 'default' (dir) at {}", path.string());
  lifecycle("storage-pool-created", "/1.0/storage-pools/default");
  return {};
}

Result<storage::StoragedClient> StorageManager::client() {
  if (auto c = storage::StoragedClient::connect(paths_.control)) return std::move(*c);
  std::lock_guard lock(spawn_mutex_);
  if (auto c = storage::StoragedClient::connect(paths_.control)) return std::move(*c);
  TRY(spawn_storaged());
  return storage::StoragedClient::connect(paths_.control);
}

Result<void> StorageManager::spawn_storaged() {
  std::string binary = find_sibling_program("vireo-storaged");
  if (binary.empty())
    return make_error(ErrorCode::kUnavailable,
                      "vireo-storaged not found next to vireod or on PATH; storage is unavailable");
  TRY(make_dirs(paths_.state, 0700));
  // A stale socket from a storaged that died would make the new one fail to bind.
  ::unlink(paths_.control.c_str());
  Fd log(::open(paths_.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log) return errno_error("open " + paths_.log.string());
  pid_t pid = TRY(spawn_detached({binary, "--state", paths_.state.string(), "--control",
                                  paths_.control.string(), "--nbd-socket", paths_.nbd.string()},
                                 log.get()));
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (true) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid)
      return make_error(ErrorCode::kUnavailable, "vireo-storaged exited at start; see {}",
                        paths_.log.string());
    if (storage::StoragedClient::connect(paths_.control)) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return make_error(ErrorCode::kTimeout, "vireo-storaged did not start in {} s; see {}",
                        kStartTimeout.count(), paths_.log.string());
    }
    std::this_thread::sleep_for(10ms);  // its only readiness signal is the socket
  }
  std::ofstream(paths_.pidfile) << pid << "\n";
  // Reaps it should it die while this vireod runs; it is not stopped with vireod.
  std::thread([pid] {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    spdlog::warn("vireo-storaged (pid {}) exited", pid);
  }).detach();
  spdlog::info("started vireo-storaged (pid {}) on {}", pid, paths_.control.string());
  return {};
}

Result<Json> StorageManager::call(Json request) {
  auto c = TRY(client());
  auto reply = c.call(request);
  if (!reply) return std::unexpected(api_error(reply.error(), request.value("op", "")));
  reply->erase("ok");
  return reply;
}

void StorageManager::lifecycle(const std::string& action, const std::string& source) {
  events_.publish("lifecycle", api::lifecycle_metadata(action, source));
}

std::vector<VolumeUser> StorageManager::users_of(const std::string& pool,
                                                 const std::string& volume) {
  const std::string key = pool + "/" + volume;
  std::vector<VolumeUser> users;
  for (const auto& source : user_sources_)
    for (auto& user : source())
      if (user.volume == key) users.push_back(std::move(user));
  return users;
}

Result<void> StorageManager::check_unused(const std::string& pool, const std::string& volume) {
  const std::string key = pool + "/" + volume;
  std::vector<std::string> users;
  for (const auto& user : users_of(pool, volume)) users.push_back(user.kind + " " + user.name);
  if (users.empty()) return {};
  return make_error(ErrorCode::kConflict, "volume {} is used by {}; remove {} first", key,
                    fmt::format("{}", fmt::join(users, ", ")), users.size() == 1 ? "it" : "them");
}

Result<Json> StorageManager::show_volume(const std::string& pool, const std::string& volume) {
  return call({{"op", "vol.show"}, {"pool", pool}, {"name", volume}});
}

Result<std::string> StorageManager::volume_uri(const std::string& pool, const std::string& volume) {
  Json reply = TRY(show_volume(pool, volume));
  if (!reply.contains("uri") || !reply["uri"].is_string())
    return make_error(ErrorCode::kInternal, "vireo-storaged: no uri for volume {}/{}", pool,
                      volume);
  return reply["uri"].get<std::string>();
}

namespace {

const std::string kPools = "/1.0/storage-pools";
const std::string kPool = kPools + "/{pool}";
const std::string kVolumes = kPool + "/volumes";
const std::string kVolume = kVolumes + "/{vol}";

std::string volume_url(const std::string& pool, const std::string& vol) {
  return kPools + "/" + pool + "/volumes/" + vol;
}

Result<std::string> absolute_path(const Json& body, const char* key) {
  std::string path = TRY(required_string(body, key));
  if (!fs::path(path).is_absolute())
    return make_error(ErrorCode::kInvalidArgument, "field '{}' must be an absolute path, got '{}'",
                      key, path);
  return fs::path(path).lexically_normal().string();
}

}  // namespace

void StorageManager::volume_created(const std::string& pool, const std::string& volume) {
  lifecycle("storage-volume-created", volume_url(pool, volume));
}

void StorageManager::add_routes(server::Router& router) {
  add_pool_routes(router);
  add_volume_routes(router);
  add_copy_routes(router);
}

void StorageManager::add_pool_routes(server::Router& router) {
  using server::Method;
  using server::Request;
  using server::Response;
  router.add_sync(Method::kGet, kPools, [this](Request&) -> Result<Response> {
    auto reply = TRY(call({{"op", "pool.ls"}}));
    return Response::json(reply.value("pools", Json::array()));
  });
  router.add_sync(Method::kPost, kPools, [this](Request& req) -> Result<Response> {
    Json body = TRY(req.json_body());
    std::string name = TRY(required_string(body, "name"));
    Json request = {{"op", "pool.create"}};
    TRY(copy_fields(body, request, {"name", "type", "path", "size"}));
    if (!request.contains("type")) request["type"] = "dir";
    auto reply = TRY(call(request));
    lifecycle("storage-pool-created", kPools + "/" + name);
    return Response::json(reply, 201);
  });
  router.add_sync(Method::kGet, kPool, [this](Request& req) -> Result<Response> {
    return Response::json(TRY(call({{"op", "pool.show"}, {"name", TRY(path_name(req, "pool"))}})));
  });
  router.add_sync(Method::kDelete, kPool, [this](Request& req) -> Result<Response> {
    std::string name = TRY(path_name(req, "pool"));
    auto reply = TRY(call({{"op", "pool.rm"}, {"name", name}}));
    lifecycle("storage-pool-deleted", kPools + "/" + name);
    return Response::json(reply);
  });
  router.add_sync(Method::kPost, kPool + "/check", [this](Request& req) -> Result<Response> {
    return Response::json(TRY(call({{"op", "pool.check"}, {"name", TRY(path_name(req, "pool"))}})));
  });
}

void StorageManager::add_volume_routes(server::Router& router) {
  using server::Method;
  using server::Request;
  using server::Response;
  router.add_sync(Method::kGet, kVolumes, [this](Request& req) -> Result<Response> {
    auto reply = TRY(call({{"op", "vol.ls"}, {"pool", TRY(path_name(req, "pool"))}}));
    return Response::json(reply.value("volumes", Json::array()));
  });
  // A body with "source" imports a file (an operation); without, an empty volume (201).
  router.add_sync(Method::kPost, kVolumes, [this](Request& req) -> Result<Response> {
    std::string p = TRY(path_name(req, "pool"));
    Json body = TRY(req.json_body());
    std::string name = TRY(required_string(body, "name"));
    if (body.contains("source")) return import_volume(p, name, body);
    if (!body.contains("size"))
      return make_error(ErrorCode::kInvalidArgument, "field 'size' is required");
    Json request = {{"op", "vol.create"}, {"pool", p}};
    TRY(copy_fields(body, request, {"name", "size", "format"}));
    auto reply = TRY(call(request));
    lifecycle("storage-volume-created", volume_url(p, name));
    return Response::json(reply, 201);
  });
  router.add_sync(Method::kGet, kVolume, [this](Request& req) -> Result<Response> {
    return Response::json(TRY(call({{"op", "vol.show"},
                                    {"pool", TRY(path_name(req, "pool"))},
                                    {"name", TRY(path_name(req, "vol"))}})));
  });
  router.add_sync(Method::kDelete, kVolume, [this](Request& req) -> Result<Response> {
    std::string p = TRY(path_name(req, "pool"));
    std::string v = TRY(path_name(req, "vol"));
    TRY(check_unused(p, v));
    auto reply = TRY(call({{"op", "vol.rm"}, {"pool", p}, {"name", v}}));
    lifecycle("storage-volume-deleted", volume_url(p, v));
    return Response::json(reply);
  });
  router.add_sync(Method::kPut, kVolume + "/resize", [this](Request& req) -> Result<Response> {
    Json body = TRY(req.json_body());
    if (!body.is_object() || !body.contains("size"))
      return make_error(ErrorCode::kInvalidArgument, "field 'size' is required");
    Json request = {{"op", "vol.resize"},
                    {"pool", TRY(path_name(req, "pool"))},
                    {"name", TRY(path_name(req, "vol"))}};
    TRY(copy_fields(body, request, {"size"}));
    return Response::json(TRY(call(request)));
  });
}

Result<server::Response> StorageManager::import_volume(const std::string& pool,
                                                       const std::string& name, const Json& body) {
  const Json& source = body["source"];
  if (!source.is_object())
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'source' must be {\"path\": ABSOLUTE_FILE, \"format\": ...}");
  Json request = {{"op", "vol.import"}, {"pool", pool}, {"name", name}};
  request["file"] = TRY(absolute_path(source, "path"));
  if (source.contains("format")) {
    if (!source["format"].is_string())
      return make_error(ErrorCode::kInvalidArgument, "field 'source.format' must be a string");
    request["source_format"] = source["format"];
  }
  TRY(copy_fields(body, request, {"format"}));
  if (::access(request["file"].get<std::string>().c_str(), R_OK) != 0)
    return errno_error("import source " + request["file"].get<std::string>());
  TRY(call({{"op", "pool.show"}, {"name", pool}}));  // an unknown pool is a 404 now
  auto op = operations_.start(
      fmt::format("Import {} into volume {}/{}", request["file"].get<std::string>(), pool, name),
      Json{{"storage_volumes", {volume_url(pool, name)}}}, server::Cancellable::kNo,
      [this, request, url = volume_url(pool, name)](server::OperationContext& ctx) -> Result<Json> {
        ctx.set_progress(0, "copying");
        Json reply = TRY(call(request));
        lifecycle("storage-volume-created", url);
        return reply;
      });
  return server::accepted(op);
}

// Export, snapshot and clone copy data in dir pools (a snapshot of a thin volume is O(1), but
// the caller cannot tell which it gets), so all three are operations.
void StorageManager::add_copy_routes(server::Router& router) {
  using server::Method;
  using server::Request;
  using server::Response;
  router.add_sync(Method::kPost, kVolume + "/export", [this](Request& req) -> Result<Response> {
    std::string p = TRY(path_name(req, "pool"));
    std::string v = TRY(path_name(req, "vol"));
    Json body = TRY(req.json_body());
    Json request = {{"op", "vol.export"}, {"pool", p}, {"name", v}};
    request["file"] = TRY(absolute_path(body, "path"));
    TRY(copy_fields(body, request, {"format"}));
    if (::access(request["file"].get<std::string>().c_str(), F_OK) == 0)
      return make_error(ErrorCode::kAlreadyExists, "{} exists; name a new file",
                        request["file"].get<std::string>());
    TRY(show_volume(p, v));  // an unknown volume is a 404 now
    auto op = operations_.start(
        fmt::format("Export volume {}/{} to {}", p, v, request["file"].get<std::string>()),
        Json{{"storage_volumes", {volume_url(p, v)}}}, server::Cancellable::kNo,
        [this, request](server::OperationContext& ctx) -> Result<Json> {
          ctx.set_progress(0, "copying");
          return call(request);
        });
    return server::accepted(op);
  });
  for (auto [verb, field] : {std::pair{"snapshot", "snapshot"}, std::pair{"clone", "clone"}}) {
    router.add_sync(
        Method::kPost, kVolume + "/" + verb, [this, verb, field](Request& req) -> Result<Response> {
          std::string p = TRY(path_name(req, "pool"));
          std::string v = TRY(path_name(req, "vol"));
          Json body = TRY(req.json_body());
          std::string name = TRY(required_string(body, "name"));
          TRY(show_volume(p, v));
          Json request = {
              {"op", std::string("vol.") + verb}, {"pool", p}, {"name", v}, {field, name}};
          auto op =
              operations_.start(fmt::format("{} volume {}/{} as {}", verb, p, v, name),
                                Json{{"storage_volumes", {volume_url(p, v), volume_url(p, name)}}},
                                server::Cancellable::kNo,
                                [this, request, url = volume_url(p, name)](
                                    server::OperationContext&) -> Result<Json> {
                                  Json reply = TRY(call(request));
                                  lifecycle("storage-volume-created", url);
                                  return reply;
                                });
          return server::accepted(op);
        });
  }
}

}  // namespace vireo::daemon
