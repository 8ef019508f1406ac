#pragma once
// Router: maps (method, path pattern) to handlers. Patterns are literal segments and
// {placeholders}: "/1.0/operations/{id}". Unknown paths answer 404, known paths with another
// method 405 with an Allow header.
#include <string>
#include <vector>

#include "server/http.h"

namespace vireo::server {

class Router {
 public:
  void add(Method method, const std::string& pattern, Handler handler);
  void add_sync(Method method, const std::string& pattern, SyncHandler handler);

  // Fills request.params and calls the handler, or answers 404/405.
  void dispatch(Request& request, Responder respond) const;

 private:
  struct Route {
    std::vector<std::string> segments;
    std::vector<std::pair<Method, Handler>> handlers;
  };
  static std::vector<std::string> split_path(const std::string& path);
  static bool match(const Route& route, const std::vector<std::string>& segments,
                    std::map<std::string, std::string>& params);

  std::vector<Route> routes_;
};

}  // namespace vireo::server
