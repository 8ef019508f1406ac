#pragma once
// A conversation with one repository of one registry (distribution spec 1.1): where the
// registry is (https, or plain http for insecure registries), who we are (anonymous, basic
// credentials, or bearer tokens fetched through the WWW-Authenticate challenge flow), and
// requests with that authentication, redirects followed (credentials never follow a redirect
// to another origin). Thread-safe: workers share a session, each with its own HttpClient.
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "image/digest.h"
#include "image/remote/http_client.h"

namespace vireo::image::remote {

// "registry.example:5000/team/app:v2" split for the wire. A name whose first component has no
// '.' or ':' and is not "localhost" is on Docker Hub (docker.io, "library/" for single names),
// as Docker and Podman read it.
struct RemoteRef {
  std::string registry;    // host[:port], as typed
  std::string repository;  // path on the registry
  std::string tag;         // empty when only a digest is given
  std::optional<Digest> digest;

  [[nodiscard]] static Result<RemoteRef> parse(std::string_view text);
  std::string reference() const { return digest ? digest->str() : tag; }  // manifest URL part
  std::string str() const;  // registry/repository[:tag][@digest]
};

struct Credentials {
  std::string username;
  std::string password;
};

struct SessionOptions {
  TlsOptions tls;
  // Plain HTTP allowed (after https failed to connect) and TLS certificates not verified.
  // Always true for localhost and loopback addresses, as in Docker.
  bool insecure = false;
  std::optional<Credentials> credentials;
};

class RegistrySession {
 public:
  // actions: "pull" or "pull,push" — the scope asked of a token server.
  RegistrySession(RemoteRef ref, SessionOptions options, std::string actions);

  const RemoteRef& ref() const { return ref_; }
  const SessionOptions& options() const { return options_; }
  // "/v2/<repository>"
  std::string repo_path() const { return "/v2/" + ref_.repository; }

  // Sends req (its url.target a path such as "/v2/a/b/manifests/x", or a full URL from a
  // Location header) with authentication, answering a 401 challenge once and following up to
  // five redirects. A file body is rewound for a retry.
  [[nodiscard]] Result<HttpResponse> send(HttpClient& client, HttpRequest req,
                                          const BodySink* sink = nullptr,
                                          size_t max_body = 16 << 20);
  // The URL of a path on the registry (after the scheme is known).
  [[nodiscard]] Result<Url> url(std::string_view path_or_url);
  // One clear line for a failed reply: the registry's error body's message when there is one.
  std::string describe(const HttpResponse& resp, std::string_view what) const;

 private:
  [[nodiscard]] Result<void> ensure_base(HttpClient& client);
  [[nodiscard]] Result<void> authenticate(HttpClient& client, const HttpResponse& challenge);
  [[nodiscard]] Result<std::string> fetch_token(HttpClient& client, const std::string& realm,
                                                const std::string& service,
                                                const std::string& scope);
  std::string authorization();

  RemoteRef ref_;
  SessionOptions options_;
  std::string actions_;
  std::mutex mu_;
  std::optional<Url> base_;  // scheme://host:port of the registry API
  std::string auth_header_;  // "Bearer ..." or "Basic ..."; empty: anonymous
};

// base64(user:password) for Basic authentication.
std::string basic_auth_value(const Credentials& c);

}  // namespace vireo::image::remote
