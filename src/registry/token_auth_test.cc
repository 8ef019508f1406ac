// The registry's bearer-token checks that need no key: the scope a request needs, and tokens
// refused before any signature is checked. Signed tokens are tested end to end against a token
// server in tests/integration/registry/remote_test.cc.
#include <gtest/gtest.h>

#include "registry/auth.h"

namespace vireo::registry {
namespace {

Request req(std::string method, std::string path) {
  Request r;
  r.method = std::move(method);
  r.path = std::move(path);
  return r;
}

TEST(TokenScope, FromMethodAndPath) {
  auto s = scope_of(req("GET", "/v2/team/app/manifests/v1"));
  EXPECT_EQ(s.type, "repository");
  EXPECT_EQ(s.name, "team/app");
  EXPECT_EQ(s.action, "pull");
  EXPECT_EQ(scope_of(req("HEAD", "/v2/a/blobs/sha256:00")).action, "pull");
  EXPECT_EQ(scope_of(req("POST", "/v2/a/b/blobs/uploads/")).name, "a/b");
  EXPECT_EQ(scope_of(req("POST", "/v2/a/b/blobs/uploads/")).action, "push");
  EXPECT_EQ(scope_of(req("PATCH", "/v2/a/blobs/uploads/u1")).action, "push");
  EXPECT_EQ(scope_of(req("DELETE", "/v2/a/manifests/sha256:00")).action, "delete");
  EXPECT_EQ(scope_of(req("GET", "/v2/a/tags/list")).name, "a");
  EXPECT_EQ(scope_of(req("GET", "/v2/a/referrers/sha256:00")).name, "a");
  // A repository whose name has a route word in it: the last marker splits.
  EXPECT_EQ(scope_of(req("GET", "/v2/x/blobs/y/manifests/t")).name, "x/blobs/y");
  EXPECT_TRUE(scope_of(req("GET", "/v2/")).name.empty());
  EXPECT_EQ(scope_of(req("GET", "/v2/_catalog")).type, "registry");
}

TEST(TokenVerify, RefusesMalformedTokens) {
  TokenAuthOptions o{.realm = "http://t/token", .service = "s", .issuer = "i", .cert_bundle = ""};
  for (const char* bad :
       {"", "abc", "a.b", "a.b.c.d", "!!!.e30.sig", "e30.e30.", "eyJhbGciOiJub25lIn0.e30.",
        "eyJhbGciOiJIUzI1NiJ9.e30.c2ln", "W10.e30.c2ln"})
    EXPECT_FALSE(verify_jwt(bad, o)) << bad;
  EXPECT_FALSE(verify_jwt(std::string(20000, 'a'), o));
  // RS256 with an empty bundle: no key to verify with.
  auto r = verify_jwt("eyJhbGciOiJSUzI1NiJ9.e30.c2ln", o);
  ASSERT_FALSE(r);
}

TEST(TokenAuthenticator, NeedsRealmServiceIssuerAndCertificates) {
  EXPECT_FALSE(
      token_authenticator({.realm = "", .service = "s", .issuer = "i", .cert_bundle = ""}));
  EXPECT_FALSE(
      token_authenticator({.realm = "r", .service = "s", .issuer = "i", .cert_bundle = "x"}));
}

}  // namespace
}  // namespace vireo::registry
