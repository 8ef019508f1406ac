// Unit tests of the registry client's parsers: URLs, WWW-Authenticate challenges, references.
#include <gtest/gtest.h>

#include "image/remote/http_client.h"
#include "image/remote/session.h"
#include "image/remote/www_authenticate.h"

namespace vireo::image::remote {
namespace {

TEST(Url, ParsesSchemesPortsAndTargets) {
  auto u = Url::parse("https://registry.example:5000/v2/a/b?x=1");
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_EQ(u->host, "registry.example");
  EXPECT_EQ(u->port, "5000");
  EXPECT_EQ(u->target, "/v2/a/b?x=1");
  EXPECT_EQ(Url::parse("http://h")->port, "80");
  EXPECT_EQ(Url::parse("https://h")->port, "443");
  EXPECT_EQ(Url::parse("https://h")->target, "/");
  EXPECT_EQ(Url::parse("http://[::1]:8080/x")->host, "::1");
  EXPECT_EQ(Url::parse("http://[::1]:8080/x")->origin(), "http://[::1]:8080");
}

TEST(Url, RefusesWhatItCannotUse) {
  for (const char* bad : {"ftp://h/", "h/v2", "http:///x", "http://u:p@h/", "http://h:8x/",
                          "http://[::1/x", "http://h/a b", "http://h/\x01"})
    EXPECT_FALSE(Url::parse(bad)) << bad;
}

TEST(Url, ResolvesLocations) {
  auto base = *Url::parse("http://reg:5000/v2/a/blobs/uploads/");
  EXPECT_EQ(base.resolve("/v2/a/blobs/uploads/u1?_state=x")->str(),
            "http://reg:5000/v2/a/blobs/uploads/u1?_state=x");
  EXPECT_EQ(base.resolve("https://cdn.example/blob")->str(), "https://cdn.example:443/blob");
  EXPECT_EQ(base.resolve("//other:81/p")->str(), "http://other:81/p");
  EXPECT_FALSE(base.resolve("relative/path"));
}

TEST(WwwAuthenticate, BearerChallenge) {
  auto c = parse_www_authenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull")");
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].scheme, "bearer");
  EXPECT_EQ((*c)[0].param("realm"), "https://auth.docker.io/token");
  EXPECT_EQ((*c)[0].param("service"), "registry.docker.io");
  EXPECT_EQ((*c)[0].param("scope"), "repository:library/busybox:pull");
}

TEST(WwwAuthenticate, SeveralChallengesEscapesAndTokens) {
  auto c = parse_www_authenticate(
      R"(Basic realm="a \"quoted\" realm", charset=UTF-8, Bearer realm=https://t/x,error="invalid_token")");
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_EQ(c->size(), 2u);
  EXPECT_EQ((*c)[0].scheme, "basic");
  EXPECT_EQ((*c)[0].param("realm"), "a \"quoted\" realm");
  EXPECT_EQ((*c)[0].param("charset"), "UTF-8");
  EXPECT_EQ((*c)[1].scheme, "bearer");
  EXPECT_EQ((*c)[1].param("realm"), "https://t/x");
  EXPECT_EQ((*c)[1].param("error"), "invalid_token");
  auto t68 = parse_www_authenticate("Negotiate abc==, Basic realm=r");
  ASSERT_TRUE(t68) << t68.error().message();
  ASSERT_EQ(t68->size(), 2u);
  EXPECT_EQ((*t68)[0].param("token68"), "abc==");
  EXPECT_EQ((*t68)[1].param("realm"), "r");
  auto bare = parse_www_authenticate("Basic");
  ASSERT_TRUE(bare);
  EXPECT_TRUE((*bare)[0].params.empty());
}

TEST(WwwAuthenticate, RefusesMalformedValues) {
  for (const char* bad :
       {"", "   ", "Bearer realm=\"unterminated", "=x", "\"quoted\"", "Bearer realm=\"x\" \x01"})
    EXPECT_FALSE(parse_www_authenticate(bad)) << bad;
  EXPECT_FALSE(parse_www_authenticate(std::string(10000, 'a')));
}

TEST(RemoteRef, SplitsRegistryAndRepository) {
  auto r = RemoteRef::parse("localhost:5000/team/app:v2");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->registry, "localhost:5000");
  EXPECT_EQ(r->repository, "team/app");
  EXPECT_EQ(r->tag, "v2");
  EXPECT_EQ(r->reference(), "v2");
  auto hub = RemoteRef::parse("busybox");
  ASSERT_TRUE(hub);
  EXPECT_EQ(hub->registry, "docker.io");
  EXPECT_EQ(hub->repository, "library/busybox");
  EXPECT_EQ(hub->tag, "latest");
  EXPECT_EQ(RemoteRef::parse("user/app")->repository, "user/app");
  EXPECT_EQ(RemoteRef::parse("reg.example/app")->registry, "reg.example");
  std::string d = "sha256:" + std::string(64, 'a');
  auto by_digest = RemoteRef::parse("127.0.0.1:5000/app@" + d);
  ASSERT_TRUE(by_digest);
  EXPECT_EQ(by_digest->reference(), d);
  EXPECT_FALSE(RemoteRef::parse("reg.example/App:1"));
  EXPECT_FALSE(RemoteRef::parse("reg.example/app:bad tag"));
}

TEST(BasicAuth, EncodesUserAndPassword) {
  EXPECT_EQ(basic_auth_value({"alice", "secret"}), "Basic YWxpY2U6c2VjcmV0");
}

}  // namespace
}  // namespace vireo::image::remote
