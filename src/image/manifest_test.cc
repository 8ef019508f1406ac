#include "image/manifest.h"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>

#include "image/media_types.h"
#include "image/reference.h"
#include "image/tag_store.h"
#include "image/test_util.h"

namespace vireo::image {
namespace {

std::string d(char c) {
  return "sha256:" + std::string(64, c);
}

Json manifest_json() {
  return {{"schemaVersion", 2},
          {"mediaType", media::kOciManifest},
          {"config", {{"mediaType", media::kOciConfig}, {"digest", d('a')}, {"size", 10}}},
          {"layers",
           {{{"mediaType", media::kOciLayerGzip}, {"digest", d('b')}, {"size", 20}},
            {{"mediaType", media::kOciLayerTar}, {"digest", d('c')}, {"size", 30}}}}};
}

TEST(ManifestTest, ParsesOciManifest) {
  auto m = parse_manifest(manifest_json().dump());
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->config.digest.str(), d('a'));
  ASSERT_EQ(m->layers.size(), 2u);
  EXPECT_EQ(m->layers[1].size, 30u);
  auto again = parse_manifest(m->to_json().dump());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->layers[0].digest, m->layers[0].digest);
}

TEST(ManifestTest, ParsesDockerSchema2Manifest) {
  Json j = manifest_json();
  j["mediaType"] = media::kDockerManifest;
  j["config"]["mediaType"] = media::kDockerConfig;
  j["layers"][0]["mediaType"] = media::kDockerLayer;
  j["layers"][1]["mediaType"] = media::kDockerLayer;
  auto m = parse_manifest(j.dump());
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(*detect_kind(j.dump()), DocumentKind::kManifest);
}

TEST(ManifestTest, RejectsMalformedWithOneLineNamingTheField) {
  struct Case {
    std::function<void(Json&)> mutate;
    std::string expect;
  } cases[] = {
      {[](Json& j) { j["schemaVersion"] = 1; }, "schemaVersion: must be 2"},
      {[](Json& j) { j["layers"][1]["digest"] = "sha256:../../x"; }, "layers[1].digest"},
      {[](Json& j) { j["layers"][0]["size"] = -1; }, "layers[0].size"},
      {[](Json& j) { j["layers"][0]["mediaType"] = "text/plain"; }, "unsupported layer media"},
      {[](Json& j) { j.erase("config"); }, "config: missing"},
      {[](Json& j) { j["config"]["mediaType"] = 3; }, "config.mediaType: must be a string"},
      {[](Json& j) { j["layers"] = "x"; }, "layers: must be an array"},
      {[](Json& j) { j["mediaType"] = media::kOciIndex; }, "is not an image manifest"},
  };
  for (auto& c : cases) {
    Json j = manifest_json();
    c.mutate(j);
    auto m = parse_manifest(j.dump());
    ASSERT_FALSE(m) << c.expect;
    EXPECT_EQ(m.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(m.error().message().find(c.expect), std::string::npos) << m.error().message();
    EXPECT_EQ(m.error().message().find('\n'), std::string::npos);
    EXPECT_TRUE(m.error().message().starts_with("invalid manifest: ")) << m.error().message();
  }
  for (const char* text :
       {"", "[]", "{", "null", "{\"schemaVersion\": 2}", "{\"size\": 10e801}", "[1e999]"})
    EXPECT_FALSE(parse_manifest(text)) << text;
}

TEST(ManifestTest, IndexSelectsLinuxAmd64) {
  Json j = {{"schemaVersion", 2},
            {"mediaType", media::kDockerManifestList},
            {"manifests",
             {{{"mediaType", media::kDockerManifest},
               {"digest", d('1')},
               {"size", 1},
               {"platform", {{"os", "linux"}, {"architecture", "arm64"}}}},
              {{"mediaType", media::kDockerManifest},
               {"digest", d('2')},
               {"size", 1},
               {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}}}}};
  EXPECT_EQ(*detect_kind(j.dump()), DocumentKind::kIndex);
  auto index = parse_index(j.dump());
  ASSERT_TRUE(index) << index.error().message();
  EXPECT_EQ(select_platform(*index)->digest.str(), d('2'));
  auto none = select_platform(*index, "linux", "s390x");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(none.error().message().find("linux/arm64"), std::string::npos);
}

TEST(ManifestTest, ParsesConfigAndRejectsBadDiffIds) {
  Json j = {
      {"architecture", "amd64"},
      {"os", "linux"},
      {"config",
       {{"Env", {"PATH=/bin"}}, {"Cmd", {"sh"}}, {"WorkingDir", "/w"}, {"User", "1000:1000"}}},
      {"rootfs", {{"type", "layers"}, {"diff_ids", {d('e')}}}}};
  auto c = parse_config(j.dump());
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->cmd, std::vector<std::string>{"sh"});
  EXPECT_EQ(c->working_dir, "/w");
  EXPECT_EQ(c->diff_ids.size(), 1u);
  j["rootfs"]["diff_ids"] = {"sha256:zz"};
  auto bad = parse_config(j.dump());
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("rootfs.diff_ids[0]"), std::string::npos);
  j["rootfs"] = {{"type", "layers"}, {"diff_ids", Json::array()}};
  j["config"]["Env"] = "PATH=/bin";
  EXPECT_FALSE(parse_config(j.dump()));
}

TEST(ReferenceTest, ParsesNameTagDigest) {
  auto r = *Reference::parse("busybox");
  EXPECT_EQ(r.name, "busybox");
  EXPECT_EQ(r.tag, "latest");
  EXPECT_EQ(r.tagged(), "busybox:latest");
  r = *Reference::parse("registry.example:5000/team/app:v2");
  EXPECT_EQ(r.name, "registry.example:5000/team/app");
  EXPECT_EQ(r.tag, "v2");
  r = *Reference::parse("app@" + d('a'));
  EXPECT_EQ(r.tag, "");
  EXPECT_EQ(r.digest->str(), d('a'));
  r = *Reference::parse("app:1@" + d('a'));
  EXPECT_EQ(r.str(), "app:1@" + d('a'));
}

TEST(ReferenceTest, RejectsBadReferences) {
  for (const char* bad : {"", "UPPER", "a//b", "../x", "a/../b", "a:", "a:-x", "a@sha256:1", "a b",
                          ":tag", "a/.hidden"})
    EXPECT_FALSE(Reference::parse(bad)) << bad;
}

TEST(TagStoreTest, SetGetRemovePersist) {
  testing::TempDir dir;
  auto tags = *TagStore::load(dir.path());
  EXPECT_FALSE(tags.get("a:latest"));
  ASSERT_TRUE(tags.set("a:latest", *Digest::parse(d('a'))));
  ASSERT_TRUE(tags.set("b:1", *Digest::parse(d('b'))));
  auto again = *TagStore::load(dir.path());
  EXPECT_EQ(again.get("a:latest")->str(), d('a'));
  ASSERT_TRUE(again.remove("a:latest"));
  EXPECT_EQ(again.remove("a:latest").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(TagStore::load(dir.path())->all().size(), 1u);
}

TEST(TagStoreTest, CorruptFileIsAnError) {
  testing::TempDir dir;
  std::ofstream(dir.path() / "images.json") << "{\"tags\": {\"a:b\": \"sha256:../x\"}}";
  auto r = TagStore::load(dir.path());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("images.json"), std::string::npos);
}

}  // namespace
}  // namespace vireo::image
