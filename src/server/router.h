#pragma once
// Router: maps (method, path pattern) to handlers. Patterns are literal segments and
// {placeholders}: "/1.0/operations/{id}". Unknown paths answer 404, known paths with another
// method 405 with an Allow header.
#include <string>
#include <vector>

#include "server/http.h"
#include "server/websocket.h"

namespace vireo::server {

class Router {
 public:
  void add(Method method, const std::string& pattern, Handler handler);
  void add_sync(Method method, const std::string& pattern, SyncHandler handler);

  // Fills request.params and calls the handler, or answers 404/405.
  void dispatch(Request& request, Responder respond) const;

  // WebSocket routes (GET with an upgrade); a plain GET of their path answers 400.
  void add_upgrade(const std::string& pattern, UpgradeHandler handler);
  // The upgrade handler for request.path (filling request.params), or null.
  const UpgradeHandler* find_upgrade(Request& request) const;

 private:
  struct Route {
    std::vector<std::string> segments;
    std::vector<std::pair<Method, Handler>> handlers;
  };
  static std::vector<std::string> split_path(const std::string& path);
  static void call_handler(const Handler& handler, Request& request, Responder respond);
  static bool match(const Route& route, const std::vector<std::string>& segments,
                    std::map<std::string, std::string>& params);

  std::vector<Route> routes_;
  std::vector<std::pair<std::vector<std::string>, UpgradeHandler>> upgrades_;
};

}  // namespace vireo::server
