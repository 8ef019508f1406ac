#include "registry/registry.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>

#include "base/json.h"
#include "base/log.h"

namespace vireo::registry {

namespace {

RegResult<size_t> page_size(const Request& req) {
  std::string n = req.param("n");
  if (n.empty()) return SIZE_MAX;
  size_t v = 0;
  auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
  if (ec != std::errc() || p != n.data() + n.size())
    return reg_error(Code::kPaginationInvalid, "invalid number of results requested", n);
  return v;
}

Response json_response(const Json& j, const std::string& type = "application/json") {
  Response r;
  r.body = dump_json(j);
  r.header("Content-Type", type);
  return r;
}

}  // namespace

RegResult<Response> file_response(Fd fd, bool head, const std::string& type,
                                  const std::string& digest) {
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return errno_error("stat blob " + digest);
  Response r;
  r.header("Content-Type", type).header("Docker-Content-Digest", digest);
  r.header("ETag", "\"" + digest + "\"");
  if (head) {
    r.head_length = uint64_t(st.st_size);
    return r;
  }
  r.file = std::move(fd);
  r.file_length = uint64_t(st.st_size);
  return r;
}

Response Registry::handle(Request& req) {
  auto route = parse_route(req.path);
  RegResult<Response> r = route ? dispatch(req, *route) : std::unexpected(route.error());
  if (!r) {
    if (r.error().code() == Code::kUnknown)
      spdlog::error("{} {}: {}", req.method, req.path, r.error().message());
    return Response::error(r.error());
  }
  return std::move(*r);
}

RegResult<Response> Registry::dispatch(Request& req, const Route& route) {
  const std::string& m = req.method;
  bool get = m == "GET" || m == "HEAD";
  switch (route.endpoint) {
    case Endpoint::kBase:
      if (get) return json_response(Json::object());
      break;
    case Endpoint::kCatalog:
    case Endpoint::kTags:
      if (get) return list(req, route);
      break;
    case Endpoint::kReferrers:
      if (get) return referrers(req, route);
      break;
    case Endpoint::kBlob:
      if (get) return get_blob(req, route);
      if (m == "DELETE") return delete_blob(route);
      break;
    case Endpoint::kUploadStart:
      if (m == "POST") return start_upload(req, route);
      break;
    case Endpoint::kUpload:
      if (get) return upload_status(route);
      if (m == "PATCH") return patch_upload(req, route);
      if (m == "PUT") return put_upload(req, route);
      if (m == "DELETE") return cancel_upload(route);
      break;
    case Endpoint::kManifest:
      if (get) return get_manifest(req, route);
      if (m == "PUT") return put_manifest(req, route);
      if (m == "DELETE") return delete_manifest(route);
      break;
  }
  return reg_error(Code::kMethodUnknown, "method not allowed here", m);
}

// Tags of a repository or the catalog of repositories, paginated with n and last.
RegResult<Response> Registry::list(Request& req, const Route& route) {
  size_t n = TRY(page_size(req));
  std::string last = req.param("last");
  bool catalog = route.endpoint == Endpoint::kCatalog;
  std::vector<std::string> all = catalog ? store_.repositories() : TRY(store_.tags(route.name));
  auto it = last.empty() ? all.begin() : std::upper_bound(all.begin(), all.end(), last);
  std::vector<std::string> page;
  for (; it != all.end() && page.size() < n; ++it) page.push_back(*it);
  Json body = catalog ? Json{{"repositories", page}} : Json{{"name", route.name}, {"tags", page}};
  Response r = json_response(body);
  if (it != all.end() && !page.empty()) {
    std::string base = catalog ? "/v2/_catalog" : "/v2/" + route.name + "/tags/list";
    r.header("Link", fmt::format("<{}?n={}&last={}>; rel=\"next\"", base, n, page.back()));
  }
  return r;
}

RegResult<Response> Registry::referrers(Request& req, const Route& route) {
  Digest d = TRY(parse_digest(route.ref));
  std::string type = req.param("artifactType");
  Response r = json_response(store_.referrers(route.name, d, type), std::string(kOciIndex));
  if (!type.empty()) r.header("OCI-Filters-Applied", "artifactType");
  return r;
}

}  // namespace vireo::registry
