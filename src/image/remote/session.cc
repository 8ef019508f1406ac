#include "image/remote/session.h"

#include "base/strings.h"

#include <unistd.h>

#include "base/base64.h"
#include "base/json.h"
#include "image/reference.h"
#include "image/remote/www_authenticate.h"

namespace vireo::image::remote {

namespace {

constexpr int kMaxRedirects = 5;
constexpr size_t kMaxTokenReply = 1 << 20;

bool is_registry_host(std::string_view first) {
  return first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
         first == "localhost" || first.starts_with("[");
}

std::string host_of(const std::string& registry) {
  if (registry.starts_with("[")) return registry.substr(1, registry.find(']') - 1);
  auto colon = registry.rfind(':');
  return colon == std::string::npos ? registry : registry.substr(0, colon);
}

bool is_loopback(const std::string& registry) {
  std::string host = host_of(registry);
  return host == "localhost" || host.starts_with("127.") || host == "::1";
}

bool is_redirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

}  // namespace

Result<RemoteRef> RemoteRef::parse(std::string_view text) {
  Reference r = TRY(Reference::parse(text));
  RemoteRef out;
  auto slash = r.name.find('/');
  if (slash != std::string::npos && is_registry_host(std::string_view(r.name).substr(0, slash))) {
    out.registry = r.name.substr(0, slash);
    out.repository = r.name.substr(slash + 1);
  } else {
    out.registry = "docker.io";
    out.repository = slash == std::string::npos ? "library/" + r.name : r.name;
  }
  for (char c : out.repository)
    if (std::isupper(static_cast<unsigned char>(c)))
      return make_error(ErrorCode::kInvalidArgument,
                        "repository '{}' must be lower case (distribution spec)", out.repository);
  out.tag = r.tag;
  out.digest = r.digest;
  return out;
}

std::string RemoteRef::str() const {
  std::string s = registry + "/" + repository;
  if (!tag.empty()) s += ":" + tag;
  if (digest) s += "@" + digest->str();
  return s;
}

std::string basic_auth_value(const Credentials& c) {
  return "Basic " + base64_encode(c.username + ":" + c.password);
}

RegistrySession::RegistrySession(RemoteRef ref, SessionOptions options, std::string actions)
    : ref_(std::move(ref)), options_(std::move(options)), actions_(std::move(actions)) {
  if (is_loopback(ref_.registry)) options_.insecure = true;
  if (options_.insecure) options_.tls.verify = false;
}

std::string RegistrySession::authorization() {
  std::lock_guard lock(mu_);
  return auth_header_;
}

Result<Url> RegistrySession::url(std::string_view path_or_url) {
  if (path_or_url.find("://") != std::string_view::npos) return Url::parse(path_or_url);
  std::lock_guard lock(mu_);
  if (!base_) return make_error(ErrorCode::kInternal, "registry session not started");
  return base_->resolve(path_or_url);
}

Result<void> RegistrySession::ensure_base(HttpClient& client) {
  {
    std::lock_guard lock(mu_);
    if (base_) return {};
  }
  std::string host = ref_.registry == "docker.io" ? "registry-1.docker.io" : ref_.registry;
  HttpRequest ping{.method = "GET", .url = TRY(Url::parse("https://" + host + "/v2/"))};
  auto resp = client.send(ping);
  if (!resp && options_.insecure && resp.error().code() != ErrorCode::kInvalidArgument) {
    ping.url = TRY(Url::parse("http://" + host + "/v2/"));
    resp = client.send(ping);
  }
  if (!resp)
    return make_error(resp.error().code(), "registry {}: {}", ref_.registry,
                      resp.error().message());
  {
    std::lock_guard lock(mu_);
    if (!base_) base_ = TRY(ping.url.resolve("/"));
  }
  if (resp->status == 401) TRY(authenticate(client, *resp));
  return {};
}

Result<HttpResponse> RegistrySession::send(HttpClient& client, HttpRequest req,
                                           const BodySink* sink, size_t max_body) {
  TRY(ensure_base(client));
  std::string target = req.url.target;
  Url current = TRY(url(target));
  off_t body_start = req.body_fd >= 0 ? ::lseek(req.body_fd, 0, SEEK_CUR) : 0;
  bool reauthenticated = false;
  Url base = TRY(url("/"));
  for (int hop = 0; hop <= kMaxRedirects;) {
    HttpRequest r = req;
    r.url = current;
    std::string auth = authorization();
    if (r.url.origin() == base.origin() && !auth.empty())
      r.headers.emplace_back("Authorization", auth);
    if (r.body_fd >= 0 && ::lseek(r.body_fd, body_start, SEEK_SET) < 0)
      return errno_error("rewind upload body");
    HttpResponse resp = TRY(client.send(r, sink, max_body));
    if (resp.status == 401 && r.url.origin() == base.origin() && !reauthenticated) {
      reauthenticated = true;
      std::unique_lock lock(mu_);
      bool changed = auth_header_ != auth;  // another worker already answered the challenge
      lock.unlock();
      if (!changed) TRY(authenticate(client, resp));
      continue;
    }
    if (!is_redirect(resp.status)) return resp;
    std::string location = resp.header("location");
    if (location.empty()) return resp;
    current = TRY(current.resolve(location));
    if (resp.status == 303) {
      req.method = "GET";
      req.body.clear();
      req.body_fd = -1;
    }
    ++hop;
  }
  return make_error(ErrorCode::kUnavailable, "registry {}: too many redirects", ref_.registry);
}

Result<void> RegistrySession::authenticate(HttpClient& client, const HttpResponse& challenge) {
  std::string header = challenge.header("www-authenticate");
  if (header.empty())
    return make_error(ErrorCode::kUnauthorized,
                      "registry {} answered 401 without a WWW-Authenticate challenge",
                      ref_.registry);
  auto challenges = TRY_CTX(parse_www_authenticate(header), "registry {}", ref_.registry);
  const Challenge* bearer = nullptr;
  const Challenge* basic = nullptr;
  for (const auto& c : challenges) {
    if (c.scheme == "bearer" && !bearer) bearer = &c;
    if (c.scheme == "basic" && !basic) basic = &c;
  }
  if (bearer) {
    std::string realm = bearer->param("realm");
    if (realm.empty())
      return make_error(ErrorCode::kUnauthorized, "registry {}: Bearer challenge without a realm",
                        ref_.registry);
    std::string scope = "repository:" + ref_.repository + ":" + actions_;
    std::string token = TRY(fetch_token(client, realm, bearer->param("service"), scope));
    std::lock_guard lock(mu_);
    auth_header_ = "Bearer " + token;
    return {};
  }
  if (!basic)
    return make_error(ErrorCode::kUnauthorized, "registry {}: unsupported authentication '{}'",
                      ref_.registry, challenges.front().scheme);
  if (!options_.credentials)
    return make_error(ErrorCode::kUnauthorized,
                      "registry {} requires a login: pass --creds USER:PASSWORD", ref_.registry);
  std::string value = basic_auth_value(*options_.credentials);
  std::lock_guard lock(mu_);
  if (auth_header_ == value)
    return make_error(ErrorCode::kUnauthorized, "registry {} refused the credentials of '{}'",
                      ref_.registry, options_.credentials->username);
  auth_header_ = value;
  return {};
}

Result<std::string> RegistrySession::fetch_token(HttpClient& client, const std::string& realm,
                                                 const std::string& service,
                                                 const std::string& scope) {
  Url url = TRY_CTX(Url::parse(realm), "token realm of registry {}", ref_.registry);
  url.target += url.target.find('?') == std::string::npos ? "?" : "&";
  if (!service.empty()) url.target += "service=" + percent_encode(service) + "&";
  url.target += "scope=" + percent_encode(scope);
  HttpRequest req{.method = "GET", .url = url};
  if (options_.credentials)
    req.headers.emplace_back("Authorization", basic_auth_value(*options_.credentials));
  HttpResponse resp = TRY(client.send(req, nullptr, kMaxTokenReply));
  if (resp.status == 401 || resp.status == 403)
    return make_error(ErrorCode::kUnauthorized, "token server {} refused {} (HTTP {}){}",
                      url.origin(), options_.credentials ? "the credentials" : "anonymous access",
                      resp.status, options_.credentials ? "" : ": pass --creds USER:PASSWORD");
  if (resp.status != 200)
    return make_error(ErrorCode::kUnavailable, "token server {} answered HTTP {}", url.origin(),
                      resp.status);
  auto json = parse_json(resp.body);
  if (!json || !json->is_object())
    return make_error(ErrorCode::kUnavailable, "token server {} sent a reply that is not JSON",
                      url.origin());
  for (const char* key : {"token", "access_token"})
    if (json->contains(key) && (*json)[key].is_string() && !(*json)[key].get<std::string>().empty())
      return (*json)[key].get<std::string>();
  return make_error(ErrorCode::kUnavailable, "token server {} sent no token", url.origin());
}

std::string RegistrySession::describe(const HttpResponse& resp, std::string_view what) const {
  std::string detail;
  auto json = parse_json(resp.body);
  if (json && json->is_object() && json->contains("errors") && (*json)["errors"].is_array() &&
      !(*json)["errors"].empty() && (*json)["errors"][0].is_object()) {
    const Json& e = (*json)["errors"][0];
    std::string code = e.value("code", Json("")).is_string() ? e.value("code", "") : "";
    std::string message = e.value("message", Json("")).is_string() ? e.value("message", "") : "";
    detail = ": " + code + (message.empty() ? "" : " (" + message + ")");
  }
  return fmt::format("{} on {}: HTTP {}{}", what, ref_.registry, resp.status, detail);
}

}  // namespace vireo::image::remote
