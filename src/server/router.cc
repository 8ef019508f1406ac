#include "server/router.h"

#include <atomic>
#include <memory>

#include "base/log.h"
#include "base/strings.h"

namespace vireo::server {

std::vector<std::string> Router::split_path(const std::string& path) {
  std::vector<std::string> out;
  for (auto& seg : split(path, '/')) {
    if (!seg.empty()) out.push_back(std::move(seg));
  }
  return out;
}

void Router::add(Method method, const std::string& pattern, Handler handler) {
  auto segments = split_path(pattern);
  for (auto& route : routes_) {
    if (route.segments == segments) {
      route.handlers.emplace_back(method, std::move(handler));
      return;
    }
  }
  routes_.push_back(Route{std::move(segments), {{method, std::move(handler)}}});
}

void Router::add_sync(Method method, const std::string& pattern, SyncHandler handler) {
  add(method, pattern, [h = std::move(handler)](Request& req, Responder respond) {
    auto r = h(req);
    respond(r ? std::move(*r) : Response::error(r.error()));
  });
}

bool Router::match(const Route& route, const std::vector<std::string>& segments,
                   std::map<std::string, std::string>& params) {
  if (route.segments.size() != segments.size()) return false;
  std::map<std::string, std::string> found;
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string& pat = route.segments[i];
    if (pat.size() > 2 && pat.front() == '{' && pat.back() == '}') {
      found[pat.substr(1, pat.size() - 2)] = segments[i];
    } else if (pat != segments[i]) {
      return false;
    }
  }
  params = std::move(found);
  return true;
}

// A handler that throws answers instead of taking the daemon down: a JSON value of the wrong
// type (nlohmann's value()/get() on a client's body) is the client's error, anything else ours.
void Router::call_handler(const Handler& handler, Request& request, Responder respond) {
  auto answered = std::make_shared<std::atomic<bool>>(false);
  Responder once = [respond, answered](Response r) {
    if (!answered->exchange(true)) respond(std::move(r));
  };
  try {
    handler(request, once);
  } catch (const Json::exception& e) {
    if (!answered->load())
      once(Response::error(
          Error(ErrorCode::kInvalidArgument, fmt::format("malformed request: {}", e.what()))));
  } catch (const std::exception& e) {
    spdlog::error("{} {}: {}", to_string(request.method), request.path, e.what());
    if (!answered->load())
      once(Response::error(
          Error(ErrorCode::kInternal, fmt::format("internal error: {}", e.what()))));
  }
}

void Router::dispatch(Request& request, Responder respond) const {
  const auto segments = split_path(request.path);
  // Literal routes win over placeholders: try routes with fewer placeholders first.
  const Route* best = nullptr;
  int best_placeholders = 1 << 30;
  std::map<std::string, std::string> best_params;
  for (const auto& route : routes_) {
    std::map<std::string, std::string> params;
    if (!match(route, segments, params)) continue;
    int placeholders = static_cast<int>(params.size());
    if (placeholders < best_placeholders) {
      best = &route;
      best_placeholders = placeholders;
      best_params = std::move(params);
    }
  }
  if (!best) {
    respond(Response::error(
        Error(ErrorCode::kNotFound,
              fmt::format("no such endpoint: {} {}", to_string(request.method), request.path))));
    return;
  }
  std::string allow;
  for (const auto& [method, handler] : best->handlers) {
    if (method == request.method) {
      request.params = std::move(best_params);
      call_handler(handler, request, std::move(respond));
      return;
    }
    allow += (allow.empty() ? "" : ", ") + std::string(to_string(method));
  }
  auto r = Response::error(Error(ErrorCode::kMethodNotAllowed,
                                 fmt::format("method {} not allowed on {}; allowed: {}",
                                             to_string(request.method), request.path, allow)));
  r.header("Allow", allow);
  respond(std::move(r));
}

void Router::add_upgrade(const std::string& pattern, UpgradeHandler handler) {
  add_sync(Method::kGet, pattern, [](Request& req) -> Result<Response> {
    return make_error(ErrorCode::kInvalidArgument,
                      "{} is a WebSocket endpoint: send an upgrade request", req.path);
  });
  upgrades_.emplace_back(split_path(pattern), std::move(handler));
}

const UpgradeHandler* Router::find_upgrade(Request& request) const {
  const auto segments = split_path(request.path);
  for (const auto& [pattern, handler] : upgrades_) {
    std::map<std::string, std::string> params;
    if (!match(Route{pattern, {}}, segments, params)) continue;
    request.params = std::move(params);
    return &handler;
  }
  return nullptr;
}

}  // namespace vireo::server
