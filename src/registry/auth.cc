#include "registry/auth.h"

#include <crypt.h>

#include <mutex>
#include <set>
#include <vector>

#include "base/base64.h"
#include "base/ids.h"
#include "base/strings.h"

namespace vireo::registry {

namespace {

bool check_password(const std::string& htpasswd, const std::string& user,
                    const std::string& password) {
  for (const auto& line : split(htpasswd, '\n')) {
    auto colon = line.find(':');
    if (colon == std::string::npos || line.substr(0, colon) != user) continue;
    std::string hash(trim(std::string_view(line).substr(colon + 1)));
    crypt_data data{};
    // crypt_rn: NULL on failure (no "*0" string to compare), and not intercepted by ASan,
    // whose crypt_r interceptor does not find libxcrypt's versioned symbol.
    const char* out = ::crypt_rn(password.c_str(), hash.c_str(), &data, sizeof data);
    return out && hash == out;
  }
  return false;
}

bool basic_authorized(const std::string& htpasswd, const std::string& authorization) {
  if (!authorization.starts_with("Basic ")) return false;
  static std::mutex mu;
  static std::set<std::string> verified;
  std::string key = sha256_hex(htpasswd + '\n' + authorization);
  {
    std::lock_guard lock(mu);
    if (verified.contains(key)) return true;
  }
  std::string plain = base64_decode(trim(authorization.substr(6)), 4096).value_or("");
  auto colon = plain.find(':');
  if (colon == std::string::npos) return false;
  if (!check_password(htpasswd, plain.substr(0, colon), plain.substr(colon + 1))) return false;
  std::lock_guard lock(mu);
  if (verified.size() > 10000) verified.clear();
  verified.insert(key);
  return true;
}

class BasicAuthenticator : public Authenticator {
 public:
  explicit BasicAuthenticator(std::string htpasswd) : htpasswd_(std::move(htpasswd)) {}
  std::optional<Response> check(const Request& req) const override {
    if (basic_authorized(htpasswd_, req.header("authorization"))) return std::nullopt;
    Response r = Response::error(RegistryError(Code::kUnauthorized, "authentication required"));
    r.header("WWW-Authenticate", "Basic realm=\"vireo-registry\"");
    return r;
  }

 private:
  std::string htpasswd_;
};

}  // namespace

std::unique_ptr<Authenticator> basic_authenticator(std::string htpasswd) {
  return std::make_unique<BasicAuthenticator>(std::move(htpasswd));
}

}  // namespace vireo::registry
