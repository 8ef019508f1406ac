#include <gtest/gtest.h>

#include "registry/digest.h"
#include "registry/names.h"
#include "registry/routes.h"

namespace vireo::registry {
namespace {

TEST(DigestTest, ParsesSha256AndSha512) {
  auto d = parse_digest("sha256:" + std::string(64, 'a'));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->algorithm, Algorithm::kSha256);
  EXPECT_TRUE(parse_digest("sha512:" + std::string(128, '0')));
  EXPECT_EQ(parse_digest("sha256:" + std::string(64, 'A')).error().code(), Code::kDigestInvalid);
  EXPECT_EQ(parse_digest("sha256:abc").error().code(), Code::kDigestInvalid);
  EXPECT_EQ(parse_digest("md5:abc").error().code(), Code::kUnsupported);
  EXPECT_EQ(parse_digest("SHA256:abc").error().code(), Code::kDigestInvalid);
  EXPECT_EQ(parse_digest("nocolon").error().code(), Code::kDigestInvalid);
}

TEST(DigestTest, HasherMatchesKnownValue) {
  EXPECT_EQ(digest_of("").str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Hasher h(Algorithm::kSha256);
  h.update("ab", 2);
  Hasher copy = h;
  h.update("c", 1);
  EXPECT_EQ(h.digest(), digest_of("abc"));
  EXPECT_EQ(copy.digest(), digest_of("ab"));
}

TEST(NamesTest, FollowsTheSpecGrammar) {
  for (const char* ok : {"a", "a/b/c", "lib-x/app_1", "a__b", "a---b", "a.b/c.d", "0"})
    EXPECT_TRUE(validate_name(ok)) << ok;
  for (const char* bad : {"", "A", "a/", "/a", "a//b", "..", "a/../b", "a_", "a___b", "-a", "a.",
                          "a..b", "a b", "a%2fb", "a/_index.json"})
    EXPECT_FALSE(validate_name(bad)) << bad;
  EXPECT_FALSE(validate_name(std::string(256, 'a')));
  EXPECT_TRUE(validate_tag("v1.0_rc-1"));
  EXPECT_TRUE(validate_tag(std::string(128, 'x')));
  EXPECT_FALSE(validate_tag(std::string(129, 'x')));
  EXPECT_FALSE(validate_tag(".x"));
  EXPECT_FALSE(validate_tag("-x"));
  EXPECT_FALSE(validate_tag("a/b"));
}

TEST(RoutesTest, SplitsNameFromEndpoint) {
  auto r = parse_route("/v2/a/b/blobs/uploads/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->endpoint, Endpoint::kUploadStart);
  EXPECT_EQ(r->name, "a/b");
  r = parse_route("/v2/a/b/blobs/uploads/id");
  EXPECT_EQ(r->endpoint, Endpoint::kUpload);
  EXPECT_EQ(r->ref, "id");
  r = parse_route("/v2/x/manifests/latest");
  EXPECT_EQ(r->endpoint, Endpoint::kManifest);
  EXPECT_EQ(parse_route("/v2/x/tags/list")->endpoint, Endpoint::kTags);
  EXPECT_FALSE(parse_route("/v2/x/y"));
  EXPECT_EQ(parse_route("/v2/x/y").error().code(), Code::kNameUnknown);
}

}  // namespace
}  // namespace vireo::registry
