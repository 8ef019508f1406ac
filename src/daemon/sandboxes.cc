#include "daemon/sandboxes.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "api/event.h"
#include "base/fd.h"
#include "base/file.h"
#include "base/subprocess.h"
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

Result<Json> summary(const sandbox::AppPaths& app) {
  auto changes = TRY(sandbox::list_store(app));
  uint64_t bytes = 0;
  for (const auto& c : changes) bytes += c.size;
  return Json{{"name", app.name},
              {"changes", changes.size()},
              {"bytes", bytes},
              {"running", sandbox::app_running(app)}};
}

// A managed app: `vireo app run` started by the daemon in its own session, its output in
// APP/app.log, its pid in APP/.pid (for stop). The daemon reaps it on a thread of its own.
struct RunRequest {
  std::string name, profile = "default", net;
  std::vector<std::string> command;
};

Result<RunRequest> run_request(const Request& req) {
  Json body = TRY(req.json_body());
  auto bad = [](std::string_view why) {
    return make_error(ErrorCode::kInvalidArgument,
                      "sandbox: {}; the body is {{\"name\": \"APP\", \"command\": [\"CMD\", ...], "
                      "\"profile\": \"default|strict\", \"net\": \"host|none|NETWORK\"}}",
                      why);
  };
  if (!body.is_object()) return bad("not a JSON object");
  RunRequest r;
  if (!body.contains("name") || !body["name"].is_string()) return bad("name is missing");
  r.name = body["name"];
  if (!body.contains("command") || !body["command"].is_array() || body["command"].empty())
    return bad("command is missing");
  for (const auto& a : body["command"]) {
    if (!a.is_string()) return bad("command holds a non-string");
    r.command.push_back(a);
  }
  if (body.contains("profile")) {
    if (body["profile"] != "default" && body["profile"] != "strict") return bad("unknown profile");
    r.profile = body["profile"];
  }
  if (body.contains("net")) {
    if (!body["net"].is_string()) return bad("net must be a string");
    r.net = body["net"];
  }
  return r;
}

Result<pid_t> start_app(const std::string& apps_dir, const RunRequest& r) {
  auto app = TRY(sandbox::app_paths(r.name, apps_dir));
  std::error_code ec;
  fs::create_directories(app.app, ec);
  if (ec) return make_error(ErrorCode::kIo, "create {}: {}", app.app, ec.message());
  TRY(sandbox::lock_app(app));  // released at once: the app takes it itself
  Fd log(::open((app.app + "/app.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!log) return errno_error("open " + app.app + "/app.log");
  std::string vireo = find_sibling_program("vireo");
  if (vireo.empty())
    return make_error(ErrorCode::kUnavailable, "the vireo program is not installed");
  std::vector<std::string> argv = {
      "env",    "VIREO_APPS_DIR=" + apps_dir, vireo, "app", "run", "--name", r.name, "--profile",
      r.profile};
  if (!r.net.empty()) argv.insert(argv.end(), {"--net", r.net});
  argv.push_back("--");
  argv.insert(argv.end(), r.command.begin(), r.command.end());
  pid_t pid = TRY(spawn_detached(argv, log.get()));
  TRY(write_file_atomic(app.app + "/.pid", std::to_string(pid)));
  std::thread([pid] { ::waitpid(pid, nullptr, 0); }).detach();
  return pid;
}

// SIGTERM to the managed app's `vireo app run` (which passes it on), then up to 10 s for the
// sandbox to end (its lock is free again). Runs as an operation, off the request thread.
Result<void> stop_app(const sandbox::AppPaths& app) {
  if (!sandbox::app_running(app)) return {};
  auto text = read_file(app.app + "/.pid");
  int pid = text ? std::atoi(text->c_str()) : 0;
  auto cmdline = read_file(fmt::format("/proc/{}/cmdline", pid));
  if (pid <= 0 || !cmdline || cmdline->find("app") == std::string::npos)
    return make_error(ErrorCode::kConflict,
                      "sandbox {} was not started by vireod; stop it where it runs", app.name);
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 200 && sandbox::app_running(app); ++i) ::usleep(50'000);
  if (sandbox::app_running(app))
    return make_error(ErrorCode::kTimeout, "sandbox {} did not stop within 10 s", app.name);
  return {};
}

}  // namespace

void add_sandbox_routes(server::Router& router, server::EventHub& events,
                        server::OperationManager& operations, const std::string& apps_dir) {
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
  router.add_sync(
      Method::kPost, "/1.0/sandboxes", [apps_dir, &events](Request& req) -> Result<Response> {
        auto r = TRY(run_request(req));
        pid_t pid = TRY(start_app(apps_dir, r));
        events.publish("lifecycle",
                       api::lifecycle_metadata("sandbox-started", "/1.0/sandboxes/" + r.name));
        return Response::json(Json{{"name", r.name}, {"pid", pid}}, 201);
      });
  router.add_sync(
      Method::kPost, "/1.0/sandboxes/{name}/stop",
      [apps_dir, &events, &operations](Request& req) -> Result<Response> {
        auto app = TRY(existing_app(apps_dir, req.params["name"]));
        auto op = operations.start(
            "Stop sandbox " + app.name, Json{{"sandboxes", {"/1.0/sandboxes/" + app.name}}},
            server::Cancellable::kNo, [app, &events](server::OperationContext&) -> Result<Json> {
              TRY(stop_app(app));
              events.publish("lifecycle", api::lifecycle_metadata("sandbox-stopped",
                                                                  "/1.0/sandboxes/" + app.name));
              return summary(app);
            });
        return server::accepted(op);
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
        Fd lock = TRY(sandbox::lock_app(app));
        TRY(sandbox::reset_store(app, path));
        events.publish("lifecycle",
                       api::lifecycle_metadata("sandbox-reset", "/1.0/sandboxes/" + app.name));
        return Response::json(TRY(summary(app)));
      });
  router.add_sync(Method::kDelete, "/1.0/sandboxes/{name}",
                  [apps_dir, &events](Request& req) -> Result<Response> {
                    auto app = TRY(existing_app(apps_dir, req.params["name"]));
                    Fd lock = TRY(sandbox::lock_app(app));
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
