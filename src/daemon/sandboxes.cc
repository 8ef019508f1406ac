#include "daemon/sandboxes.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>

#include "api/event.h"
#include "base/fd.h"
#include "sandbox/app_store.h"

namespace vireo::daemon {

namespace {

using server::Method;
using server::Request;
using server::Response;
namespace fs = std::filesystem;

Json change_json(const sandbox::StoreChange& c) {
  return {{"path", c.path},
          {"change", sandbox::to_string(c.kind)},
          {"type", std::string(1, c.type)},
          {"size", c.size}};
}

Result<sandbox::AppPaths> existing_app(const std::string& apps_dir, const std::string& name) {
  auto app = TRY(sandbox::app_paths(name, apps_dir));
  std::error_code ec;
  if (!fs::is_directory(app.app, ec))
    return make_error(ErrorCode::kNotFound, "sandbox {} not found", name);
  return app;
}

// The app's run lock (see sandbox/run.cc): taken here, the app is not running.
Result<Fd> lock_idle(const sandbox::AppPaths& app) {
  Fd fd(::open((app.app + "/.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return errno_error("open " + app.app + "/.lock");
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
    return make_error(ErrorCode::kConflict, "sandbox {} is running; stop the app first", app.name);
  return fd;
}

Result<Json> summary(const sandbox::AppPaths& app) {
  auto changes = TRY(sandbox::list_store(app));
  uint64_t bytes = 0;
  for (const auto& c : changes) bytes += c.size;
  return Json{{"name", app.name}, {"changes", changes.size()}, {"bytes", bytes}};
}

}  // namespace

void add_sandbox_routes(server::Router& router, server::EventHub& events,
                        const std::string& apps_dir) {
  router.add_sync(Method::kGet, "/1.0/sandboxes", [apps_dir](Request&) -> Result<Response> {
    Json list = Json::array();
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(apps_dir, ec)) {
      auto app = sandbox::app_paths(entry.path().filename().string(), apps_dir);
      if (!app || !entry.is_directory(ec)) continue;
      list.push_back(TRY(summary(*app)));
    }
    return Response::json(list);
  });
  router.add_sync(Method::kGet, "/1.0/sandboxes/{name}",
                  [apps_dir](Request& req) -> Result<Response> {
                    auto app = TRY(existing_app(apps_dir, req.params["name"]));
                    Json j = TRY(summary(app));
                    j["store"] = Json::array();
                    for (const auto& c : TRY(sandbox::list_store(app)))
                      j["store"].push_back(change_json(c));
                    return Response::json(j);
                  });
  router.add_sync(
      Method::kPost, "/1.0/sandboxes/{name}/reset",
      [apps_dir, &events](Request& req) -> Result<Response> {
        auto app = TRY(existing_app(apps_dir, req.params["name"]));
        std::string path;
        if (!req.body.empty()) {
          Json body = TRY(req.json_body());
          if (!body.is_object() || (body.contains("path") && !body["path"].is_string()))
            return make_error(ErrorCode::kInvalidArgument,
                              "the body is {\"path\": \"/etc/FILE\"} or empty (reset all)");
          path = body.value("path", "");
        }
        Fd lock = TRY(lock_idle(app));
        TRY(sandbox::reset_store(app, path));
        events.publish("lifecycle",
                       api::lifecycle_metadata("sandbox-reset", "/1.0/sandboxes/" + app.name));
        return Response::json(TRY(summary(app)));
      });
  router.add_sync(Method::kDelete, "/1.0/sandboxes/{name}",
                  [apps_dir, &events](Request& req) -> Result<Response> {
                    auto app = TRY(existing_app(apps_dir, req.params["name"]));
                    Fd lock = TRY(lock_idle(app));
                    std::error_code ec;
                    fs::remove_all(app.app, ec);
                    if (ec)
                      return make_error(ErrorCode::kIo, "remove {}: {}", app.app, ec.message());
                    events.publish(
                        "lifecycle",
                        api::lifecycle_metadata("sandbox-deleted", "/1.0/sandboxes/" + app.name));
                    return Response::json(Json::object());
                  });
}

}  // namespace vireo::daemon
