// Bearer-token authentication of vireo-registry (auth.h): JWT verification with OpenSSL and
// the scope a request needs.
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <chrono>
#include <memory>
#include <vector>

#include "base/base64.h"
#include "base/strings.h"
#include "registry/auth.h"

namespace vireo::registry {

namespace {

constexpr size_t kMaxToken = 16 << 10;
constexpr int64_t kLeewaySeconds = 60;

using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

Result<std::string> decode_part(std::string_view part) {
  auto out = base64url_decode(part, kMaxToken);
  if (!out) return make_error(ErrorCode::kInvalidArgument, "token is not base64url");
  return *out;
}

Result<std::string> decode_x5c(std::string_view entry) {
  auto out = base64_decode(entry, kMaxToken);
  if (!out) return make_error(ErrorCode::kInvalidArgument, "x5c entry is not base64");
  return *out;
}

Result<std::vector<X509Ptr>> load_bundle(const std::string& pem) {
  std::vector<X509Ptr> certs;
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr))
    certs.emplace_back(c, X509_free);
  if (certs.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "the token certificate bundle holds no PEM certificate");
  return certs;
}

X509Ptr parse_der(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  return X509Ptr(d2i_X509(nullptr, &p, static_cast<long>(der.size())), X509_free);
}

// The x5c chain's leaf, verified up to a certificate of the bundle.
Result<PkeyPtr> key_from_x5c(const Json& x5c, const std::vector<X509Ptr>& roots) {
  if (!x5c.is_array() || x5c.empty() || x5c.size() > 8)
    return make_error(ErrorCode::kUnauthorized, "token x5c must be a short array");
  std::vector<X509Ptr> chain;
  for (const auto& entry : x5c) {
    if (!entry.is_string())
      return make_error(ErrorCode::kUnauthorized, "token x5c entry is not a string");
    auto cert = parse_der(TRY(decode_x5c(entry.get<std::string>())));
    if (!cert) return make_error(ErrorCode::kUnauthorized, "token x5c entry is not a certificate");
    chain.push_back(std::move(cert));
  }
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  for (const auto& r : roots) X509_STORE_add_cert(store.get(), r.get());
  X509_STORE_set_flags(store.get(), X509_V_FLAG_PARTIAL_CHAIN);
  std::unique_ptr<STACK_OF(X509), void (*)(STACK_OF(X509)*)> untrusted(
      sk_X509_new_null(), [](STACK_OF(X509) * s) { sk_X509_free(s); });
  for (size_t i = 1; i < chain.size(); ++i) sk_X509_push(untrusted.get(), chain[i].get());
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(),
                                                                      X509_STORE_CTX_free);
  if (X509_STORE_CTX_init(ctx.get(), store.get(), chain[0].get(), untrusted.get()) != 1 ||
      X509_verify_cert(ctx.get()) != 1)
    return make_error(ErrorCode::kUnauthorized, "token signed by an untrusted certificate ({})",
                      X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())));
  return PkeyPtr(X509_get_pubkey(chain[0].get()), EVP_PKEY_free);
}

// ES256 signatures are r||s (32 bytes each); OpenSSL wants DER.
std::string es256_to_der(const std::string& raw) {
  if (raw.size() != 64) return {};
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(ECDSA_SIG_new(), ECDSA_SIG_free);
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
  if (!r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return {};
  }
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(sig.get(), &der);
  if (len <= 0) return {};
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

bool signature_ok(EVP_PKEY* key, const std::string& alg, std::string_view input,
                  const std::string& signature) {
  int type = EVP_PKEY_base_id(key);
  std::string sig = signature;
  if (alg == "RS256" && type != EVP_PKEY_RSA) return false;
  if (alg == "ES256") {
    if (type != EVP_PKEY_EC) return false;
    sig = es256_to_der(signature);
    if (sig.empty()) return false;
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  return EVP_DigestVerifyInit(md.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
         EVP_DigestVerify(md.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
}

bool audience_ok(const Json& aud, const std::string& service) {
  if (aud.is_string()) return aud.get<std::string>() == service;
  if (!aud.is_array()) return false;
  for (const auto& a : aud)
    if (a.is_string() && a.get<std::string>() == service) return true;
  return false;
}

Result<void> check_times(const Json& claims) {
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  if (!claims.contains("exp") || !claims["exp"].is_number())
    return make_error(ErrorCode::kUnauthorized, "token has no expiry");
  if (claims["exp"].get<double>() < static_cast<double>(now - kLeewaySeconds))
    return make_error(ErrorCode::kUnauthorized, "token expired");
  if (claims.contains("nbf") &&
      (!claims["nbf"].is_number() ||
       claims["nbf"].get<double>() > static_cast<double>(now + kLeewaySeconds)))
    return make_error(ErrorCode::kUnauthorized, "token not valid yet");
  return {};
}

bool grants(const Json& claims, const Scope& need) {
  if (need.name.empty()) return true;  // /v2/: any valid token
  if (!claims.contains("access") || !claims["access"].is_array()) return false;
  for (const auto& a : claims["access"]) {
    if (!a.is_object() || a.value("type", Json()) != need.type ||
        a.value("name", Json()) != need.name)
      continue;
    const Json actions = a.value("actions", Json::array());
    if (!actions.is_array()) continue;
    for (const auto& act : actions)
      if (act == need.action || act == "*") return true;
  }
  return false;
}

class TokenAuthenticator : public Authenticator {
 public:
  TokenAuthenticator(TokenAuthOptions o) : o_(std::move(o)) {}

  std::optional<Response> check(const Request& req) const override {
    Scope need = scope_of(req);
    std::vector<Scope> needs = {need};
    if (req.method == "POST" && !req.param("mount").empty() && !req.param("from").empty())
      needs.push_back({"repository", req.param("from"), "pull"});
    std::string auth = req.header("authorization");
    if (!auth.starts_with("Bearer ")) return challenge(needs, "");
    auto claims = verify_jwt(std::string_view(auth).substr(7), o_);
    if (!claims) return challenge(needs, claims.error().message(), "invalid_token");
    for (const auto& n : needs)
      if (!grants(*claims, n))
        return challenge(needs,
                         "the token does not grant " + n.type + ":" + n.name + ":" + n.action,
                         "insufficient_scope");
    return std::nullopt;
  }

 private:
  Response challenge(const std::vector<Scope>& needs, const std::string& why,
                     const std::string& error = "") const {
    std::string value = "Bearer realm=\"" + o_.realm + "\",service=\"" + o_.service + "\"";
    std::string scopes;
    for (const auto& n : needs) {
      if (n.name.empty()) continue;
      // A writer also reads (docker clients ask for pull,push).
      std::string actions = n.action == "pull" ? "pull" : "pull," + n.action;
      scopes += (scopes.empty() ? "" : " ") + n.type + ":" + n.name + ":" + actions;
    }
    if (!scopes.empty()) value += ",scope=\"" + scopes + "\"";
    if (!error.empty()) value += ",error=\"" + error + "\"";
    Response r =
        Response::error(RegistryError(Code::kUnauthorized, "authentication required", why));
    r.header("WWW-Authenticate", value);
    return r;
  }

  TokenAuthOptions o_;
};

}  // namespace

Scope scope_of(const Request& req) {
  const std::string& path = req.path;
  if (path == "/v2/" || path == "/v2") return {};
  if (path == "/v2/_catalog") return {"registry", "catalog", "*"};
  size_t cut = std::string::npos;
  for (const char* marker : {"/manifests/", "/blobs/", "/tags/", "/referrers/"}) {
    auto at = path.rfind(marker);
    if (at != std::string::npos && (cut == std::string::npos || at > cut)) cut = at;
  }
  std::string name = path.starts_with("/v2/") && cut != std::string::npos && cut > 4
                         ? path.substr(4, cut - 4)
                         : path.substr(std::min<size_t>(4, path.size()));
  std::string action = req.method == "GET" || req.method == "HEAD" ? "pull"
                       : req.method == "DELETE"                    ? "delete"
                                                                   : "push";
  return {"repository", name, action};
}

Result<Json> verify_jwt(std::string_view token, const TokenAuthOptions& o) {
  if (token.size() > kMaxToken) return make_error(ErrorCode::kUnauthorized, "token too long");
  auto dot1 = token.find('.');
  auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
    return make_error(ErrorCode::kUnauthorized, "token is not a compact JWS");
  Json header = TRY(parse_json(TRY(decode_part(token.substr(0, dot1)))));
  Json claims = TRY(parse_json(TRY(decode_part(token.substr(dot1 + 1, dot2 - dot1 - 1)))));
  std::string signature = TRY(decode_part(token.substr(dot2 + 1)));
  if (!header.is_object() || !claims.is_object())
    return make_error(ErrorCode::kUnauthorized, "token header and claims must be objects");
  std::string alg = header.value("alg", Json("")).is_string() ? header.value("alg", "") : "";
  if (alg != "RS256" && alg != "ES256")
    return make_error(ErrorCode::kUnauthorized, "token algorithm '{}' is not RS256 or ES256", alg);
  auto roots = TRY(load_bundle(o.cert_bundle));
  std::string_view input = token.substr(0, dot2);
  bool ok = false;
  if (header.contains("x5c")) {
    PkeyPtr key = TRY(key_from_x5c(header["x5c"], roots));
    ok = key && signature_ok(key.get(), alg, input, signature);
  } else {
    for (const auto& cert : roots) {
      PkeyPtr key(X509_get_pubkey(cert.get()), EVP_PKEY_free);
      if (key && signature_ok(key.get(), alg, input, signature)) ok = true;
    }
  }
  if (!ok) return make_error(ErrorCode::kUnauthorized, "token signature does not verify");
  if (claims.value("iss", Json()) != o.issuer)
    return make_error(ErrorCode::kUnauthorized, "token issuer is not '{}'", o.issuer);
  if (!audience_ok(claims.value("aud", Json()), o.service))
    return make_error(ErrorCode::kUnauthorized, "token audience is not '{}'", o.service);
  TRY(check_times(claims));
  return claims;
}

Result<std::unique_ptr<Authenticator>> token_authenticator(TokenAuthOptions o) {
  if (o.realm.empty() || o.service.empty() || o.issuer.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "token authentication needs a realm, a service and an issuer");
  TRY(load_bundle(o.cert_bundle));
  return std::unique_ptr<Authenticator>(std::make_unique<TokenAuthenticator>(std::move(o)));
}

}  // namespace vireo::registry
