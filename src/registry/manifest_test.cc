#include <gtest/gtest.h>

#include "registry/manifest.h"

namespace vireo::registry {
namespace {

std::string desc(const std::string& type, const std::string& content,
                 const std::string& extra = {}) {
  return R"({"mediaType":")" + type + R"(","digest":")" + digest_of(content).str() +
         R"(","size":)" + std::to_string(content.size()) + extra + "}";
}

TEST(ManifestTest, ImageManifestListsConfigAndLayers) {
  std::string body = R"({"schemaVersion":2,"config":)" + desc("application/x-config", "c") +
                     R"(,"layers":[)" + desc("l", "1") + "," +
                     desc("l", "2", R"(,"urls":["http://x"])") + "]}";
  auto m = parse_manifest(body, "application/vnd.oci.image.manifest.v1+json; charset=utf-8");
  ASSERT_TRUE(m) << m.error().detail();
  EXPECT_FALSE(m->is_index);
  ASSERT_EQ(m->blobs.size(), 3u);
  EXPECT_TRUE(m->blobs[2].external);
  EXPECT_EQ(m->artifact_type, "application/x-config");
}

TEST(ManifestTest, MediaTypeComesFromBodyWhenHeaderIsGeneric) {
  std::string body = R"({"schemaVersion":2,"mediaType":")" + std::string(kDockerList) +
                     R"(","manifests":[)" + desc(std::string(kDockerManifest), "m") + "]}";
  auto m = parse_manifest(body, "application/octet-stream");
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->is_index);
  EXPECT_EQ(m->children.size(), 1u);
  auto mismatch = parse_manifest(body, kOciIndex);
  EXPECT_EQ(mismatch.error().code(), Code::kManifestInvalid);
}

TEST(ManifestTest, SubjectIsRecorded) {
  std::string body = R"({"schemaVersion":2,"artifactType":"a/b","config":)" + desc("c", "c") +
                     R"(,"layers":[],"subject":)" + desc(std::string(kOciManifest), "s") + "}";
  auto m = parse_manifest(body, kOciManifest);
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->subject);
  EXPECT_EQ(m->subject->digest, digest_of("s"));
  EXPECT_EQ(m->artifact_type, "a/b");
}

TEST(ManifestTest, HostileInputIsInvalidNotACrash) {
  for (const std::string& body : std::vector<std::string>{
           "", "null", "\"x\"", "{\"schemaVersion\":2.5}", "{\"schemaVersion\":2,\"config\":[]}",
           R"({"schemaVersion":2,"config":{"mediaType":1},"layers":[]})",
           R"({"schemaVersion":2,"manifests":{}})", std::string(100, '[')}) {
    auto m = parse_manifest(body, kOciManifest);
    EXPECT_FALSE(m) << body;
    if (!m) {
      EXPECT_EQ(m.error().code(), Code::kManifestInvalid);
    }
  }
}

}  // namespace
}  // namespace vireo::registry
