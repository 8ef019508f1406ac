#include "image/image_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "base/file.h"
#include "base/subprocess.h"
#include "image/media_types.h"
#include "image/store_test_fixture.h"
#include "image/tar_builder.h"
#include "image/test_util.h"

namespace vireo::image {
namespace {

namespace fs = std::filesystem;
using testing::Compression;
using testing::TarBuilder;
using testing::write_layout;

void write(const fs::path& p, const std::string& content) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << content;
}

std::string base_layer() {
  return TarBuilder()
      .dir("bin")
      .file("bin/sh", "#!fake shell\n", 0755)
      .dir("etc")
      .file("etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
      .file("etc/group", "root:x:0:\nstaff:x:50:\n")
      .build(Compression::kGzip);
}

using ImageStoreTest = testing::StoreTest;

TEST_F(ImageStoreTest, OneStorePerRootAtATime) {
  auto first = open_store("shared");
  auto second = ImageStore::create(path("shared"));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), ErrorCode::kConflict);
  EXPECT_NE(second.error().message().find("in use by another process"), std::string::npos);
  first.reset();
  EXPECT_TRUE(ImageStore::create(path("shared")));
}

TEST_F(ImageStoreTest, PruneWaitsForPullsAndBuilds) {
  auto store = open_store("s");
  {
    auto work = store->begin_work();
    auto refused = store->prune();
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code(), ErrorCode::kConflict);
  }
  EXPECT_TRUE(store->prune());
}

TEST_F(ImageStoreTest, ImportRootfsTarMakesOneLayerImage) {
  write(path("rootfs.tar.gz"), base_layer());
  auto store = open_store("store");
  auto image = store->import_rootfs_tar(path("rootfs.tar.gz"), "base:1");
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(image->tags, std::vector<std::string>{"base:1"});
  ASSERT_EQ(image->manifest.layers.size(), 1u);
  EXPECT_EQ(image->manifest.layers[0].media_type, media::kOciLayerGzip);
  ASSERT_EQ(image->config.diff_ids.size(), 1u);
  fs::path layer = path("store/layers") / image->config.diff_ids[0].hex;
  EXPECT_EQ(*read_file(layer / "bin/sh"), "#!fake shell\n");
  auto shown = store->show("base:1");
  ASSERT_TRUE(shown);
  EXPECT_EQ(shown->manifest_digest, image->manifest_digest);
  EXPECT_EQ(store->list()->size(), 1u);
  store.reset();  // one store per root at a time
  auto again = ImageStore::create(path("store"));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ((*again)->show("base:1")->manifest_digest, image->manifest_digest);
}

TEST_F(ImageStoreTest, SameLayerIsUnpackedOnceAndShared) {
  write(path("rootfs.tar.gz"), base_layer());
  auto store = open_store("store");
  auto a = store->import_rootfs_tar(path("rootfs.tar.gz"), "a");
  auto b = store->import_rootfs_tar(path("rootfs.tar.gz"), "b");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->manifest_digest, b->manifest_digest);
  EXPECT_EQ(store->layers().list()->size(), 1u);
  EXPECT_EQ(store->blobs().list()->size(), 3u);
  EXPECT_EQ(store->show("a:latest")->tags, (std::vector<std::string>{"a:latest", "b:latest"}));
}

TEST_F(ImageStoreTest, CorruptLayerBlobIsNotUnpackedAgain) {
  write(path("rootfs.tar"), TarBuilder().file("a", std::string(4096, 'a')).build());
  auto store = open_store("store");
  auto image = store->import_rootfs_tar(path("rootfs.tar"), "a");
  ASSERT_TRUE(image) << image.error().message();
  fs::path blob = store->blobs().path_of(image->manifest.layers[0].digest);
  std::string bytes = *read_file(blob);
  bytes[bytes.size() - 5000] ^= 1;  // inside the file's data
  fs::remove(blob);
  write(blob, bytes);
  ASSERT_TRUE(store->layers().remove(image->config.diff_ids[0]));
  auto r = store->unpack("a");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("corrupt"), std::string::npos) << r.error().message();
  EXPECT_FALSE(store->layers().has(image->config.diff_ids[0]));
}

TEST_F(ImageStoreTest, TagRemoveAndPruneFreeUnreachableData) {
  write(path("rootfs.tar.gz"), base_layer());
  auto store = open_store("store");
  ASSERT_TRUE(store->import_rootfs_tar(path("rootfs.tar.gz"), "a"));
  ASSERT_TRUE(store->tag("a", "c:2"));
  ASSERT_TRUE(store->remove("a"));
  EXPECT_EQ(store->show("a").error().code(), ErrorCode::kNotFound);
  auto keep = store->prune();
  ASSERT_TRUE(keep) << keep.error().message();
  EXPECT_EQ(keep->blobs_removed + keep->layers_removed, 0u);
  Digest manifest = store->show("c:2")->manifest_digest;
  ASSERT_TRUE(store->remove("c:2"));
  EXPECT_EQ(store->remove("c:2").error().code(), ErrorCode::kNotFound);
  auto pinned = store->prune({manifest});
  ASSERT_TRUE(pinned) << pinned.error().message();
  EXPECT_EQ(pinned->blobs_removed + pinned->layers_removed, 0u);
  auto report = store->prune();
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->blobs_removed, 3u);
  EXPECT_EQ(report->layers_removed, 1u);
  EXPECT_GT(report->bytes_freed, 0u);
  EXPECT_TRUE(store->blobs().list()->empty());
  EXPECT_TRUE(fs::is_empty(path("store/layers")));
}

TEST_F(ImageStoreTest, BadImportsFailWithOneLineAndLeaveNothing) {
  auto store = open_store("store");
  auto missing = store->import_rootfs_tar(path("nope.tar"), "x");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  write(path("garbage.tar"), std::string(5000, 'g'));
  EXPECT_FALSE(store->import_rootfs_tar(path("garbage.tar"), "x"));
  write(path("evil.tar"), TarBuilder().file("ok", "1").file("../escape", "2").build());
  auto evil = store->import_rootfs_tar(path("evil.tar"), "x");
  ASSERT_FALSE(evil);
  EXPECT_NE(evil.error().message().find("entry '../escape'"), std::string::npos)
      << evil.error().message();
  EXPECT_EQ(evil.error().message().find('\n'), std::string::npos);
  EXPECT_TRUE(fs::is_empty(path("store/layers")));
  EXPECT_FALSE(fs::exists(path("escape")));
  EXPECT_FALSE(fs::exists(path("store/escape")));
  EXPECT_TRUE(store->list()->empty());
  EXPECT_FALSE(store->import_rootfs_tar(path("garbage.tar"), "Bad Name"));
}

TEST_F(ImageStoreTest, OciLayoutImportExportRoundTrip) {
  Digest md = write_layout(path("layout"), {base_layer()}, {{"Cmd", {"/bin/sh"}}}, "v1");
  auto store = open_store("store");
  auto image = store->import_oci_layout(path("layout"), "app:v1");
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(image->manifest_digest, md);
  ASSERT_TRUE(store->export_oci_layout("app:v1", path("out")));
  EXPECT_TRUE(fs::exists(path("out/blobs/sha256") / md.hex));
  auto second = open_store("second");
  auto copy = second->import_oci_layout(path("out"), "copy:v1");
  ASSERT_TRUE(copy) << copy.error().message();
  EXPECT_EQ(copy->manifest_digest, md);
  ASSERT_TRUE(store->export_oci_archive("app:v1", path("app.tar")));
  auto third = open_store("third");
  auto from_archive = third->import_oci_archive(path("app.tar"), "arch:1");
  ASSERT_TRUE(from_archive) << from_archive.error().message();
  EXPECT_EQ(from_archive->manifest_digest, md);
  EXPECT_FALSE(store->export_oci_layout("app:v1", path("out")));  // not empty
}

TEST_F(ImageStoreTest, LayoutWithCorruptOrEscapingBlobIsRejected) {
  Digest md = write_layout(path("layout"), {base_layer()});
  auto store = open_store("store");
  // The manifest blob replaced by a symlink out of the layout: never followed.
  write(path("secret"), "{}");
  fs::remove(path("layout/blobs/sha256") / md.hex);
  fs::create_symlink(path("secret"), path("layout/blobs/sha256") / md.hex);
  auto r = store->import_oci_layout(path("layout"), "x");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("symlink"), std::string::npos) << r.error().message();
  // A blob whose content does not match its digest.
  fs::remove(path("layout/blobs/sha256") / md.hex);
  write(path("layout/blobs/sha256") / md.hex, std::string(50, 'x'));
  r = store->import_oci_layout(path("layout"), "x");
  ASSERT_FALSE(r);
  EXPECT_TRUE(store->list()->empty());
}

TEST_F(ImageStoreTest, DockerArchiveImportUsesRepoTags) {
  std::string layer = TarBuilder().file("hello", "world").build();
  std::string config =
      Json({{"architecture", "amd64"},
            {"os", "linux"},
            {"config", {{"Cmd", {"/hello"}}}},
            {"rootfs", {{"type", "layers"}, {"diff_ids", {digest_of(layer).str()}}}}})
          .dump();
  Json manifest = Json::array(
      {{{"Config", "cfg.json"}, {"RepoTags", {"hello:1"}}, {"Layers", {"l1/layer.tar"}}}});
  write(path("docker.tar"), TarBuilder()
                                .file("manifest.json", manifest.dump())
                                .file("cfg.json", config)
                                .dir("l1")
                                .file("l1/layer.tar", layer)
                                .build());
  auto store = open_store("store");
  auto image = store->import_docker_archive(path("docker.tar"), "");
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(image->tags, std::vector<std::string>{"hello:1"});
  EXPECT_EQ(image->config.cmd, std::vector<std::string>{"/hello"});
  // Paths in manifest.json are resolved inside the archive only.
  manifest[0]["Layers"] = {"../../../etc/passwd"};
  write(path("evil.tar"),
        TarBuilder().file("manifest.json", manifest.dump()).file("cfg.json", config).build());
  auto evil = store->import_docker_archive(path("evil.tar"), "evil");
  ASSERT_FALSE(evil);
}

// Two layers where the second removes, hides and writes through what the first made.
void check_stacked(ImageStore& store, const fs::path& dest, RootfsMode mode,
                   const fs::path& outside) {
  auto prepared = store.prepare_rootfs("stack", dest, mode);
  ASSERT_TRUE(prepared) << prepared.error().message();
  fs::path r = prepared->rootfs;
  EXPECT_FALSE(fs::exists(fs::symlink_status(r / "etc/removed")));
  EXPECT_TRUE(fs::exists(r / "etc/kept"));
  EXPECT_FALSE(fs::exists(r / "d/old"));
  EXPECT_EQ(*read_file(r / "d/new"), "new");
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(r / "evil")));
  EXPECT_EQ(*read_file(r / "evil/passwd"), "inside");
  EXPECT_FALSE(fs::exists(outside / "passwd"));
  EXPECT_EQ(prepared->process.args, (std::vector<std::string>{"/bin/sh", "-c", "true"}));
  EXPECT_EQ(prepared->process.uid, 1000u);
  EXPECT_EQ(prepared->process.gid, 50u);
  EXPECT_EQ(prepared->process.cwd, "/work");
  ASSERT_TRUE(release_rootfs(dest));
  EXPECT_FALSE(fs::exists(dest));
}

class StackedLayersTest : public ImageStoreTest {
 protected:
  void SetUp() override {
    fs::create_directories(path("outside"));
    std::string lower = TarBuilder()
                            .dir("etc")
                            .file("etc/passwd", "app:x:1000:1001::/:/bin/sh\n")
                            .file("etc/group", "staff:x:50:\n")
                            .file("etc/removed", "r")
                            .file("etc/kept", "k")
                            .dir("d")
                            .file("d/old", "o")
                            .symlink("evil", path("outside").string())
                            .build(Compression::kGzip);
    std::string upper = TarBuilder()
                            .file("etc/.wh.removed", "")
                            .file("d/.wh..wh..opq", "")
                            .file("d/new", "new")
                            .file("evil/passwd", "inside")
                            .build(Compression::kZstd);
    write_layout(path("layout"), {lower, upper},
                 {{"Entrypoint", {"/bin/sh"}},
                  {"Cmd", {"-c", "true"}},
                  {"User", "app:staff"},
                  {"WorkingDir", "/work"}});
  }
};

TEST_F(StackedLayersTest, FlattenAppliesListedWhiteoutsUnprivileged) {
  auto store = open_store("store", false);
  ASSERT_TRUE(store->import_oci_layout(path("layout"), "stack"));
  check_stacked(*store, path("ctr"), RootfsMode::kCopy, path("outside"));
}

TEST_F(StackedLayersTest, FlattenAppliesOverlayMarkersPrivileged) {
  if (!testing::is_root()) GTEST_SKIP() << "needs root";
  auto store = open_store("store", true);
  ASSERT_TRUE(store->import_oci_layout(path("layout"), "stack"));
  check_stacked(*store, path("ctr"), RootfsMode::kCopy, path("outside"));
}

TEST_F(StackedLayersTest, OverlayRefusesLayersWithListedWhiteouts) {
  auto store = open_store("store", false);
  ASSERT_TRUE(store->import_oci_layout(path("layout"), "stack"));
  auto r = store->prepare_rootfs("stack", path("ctr"), RootfsMode::kOverlay);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kConflict);
  EXPECT_TRUE(release_rootfs(path("ctr")));
}

// The stacked image exported flattened: one root file system tar with the whiteouts applied,
// which imports again as a one-layer image holding the same files.
TEST_F(StackedLayersTest, RootfsTarExportIsTheFlattenedTree) {
  auto store = open_store("store", testing::is_root());
  ASSERT_TRUE(store->import_oci_layout(path("layout"), "stack"));
  auto r = store->export_rootfs_tar("stack", path("rootfs.tar"));
  ASSERT_TRUE(r) << r.error().message();
  auto flat = store->import_rootfs_tar(path("rootfs.tar"), "flat:1");
  ASSERT_TRUE(flat) << flat.error().message();
  ASSERT_EQ(flat->manifest.layers.size(), 1u);
  fs::path layer = store->layers().path_of(flat->config.diff_ids[0]);
  EXPECT_EQ(*read_file(layer / "etc/kept"), "k");
  EXPECT_FALSE(fs::exists(layer / "etc/removed"));
  EXPECT_FALSE(fs::exists(layer / "etc/.wh.removed"));
  EXPECT_FALSE(fs::exists(layer / "d/old"));
  EXPECT_EQ(*read_file(layer / "d/new"), "new");
  EXPECT_EQ(*read_file(layer / "evil/passwd"), "inside");
  EXPECT_FALSE(fs::exists(path("outside/passwd")));
  // Nothing left in the scratch space.
  EXPECT_TRUE(fs::is_empty(path("store/tmp")));
}

TEST_F(StackedLayersTest, DockerArchiveExportImportsWithTheSameLayers) {
  auto store = open_store("store");
  auto stacked = store->import_oci_layout(path("layout"), "stack:v1");
  ASSERT_TRUE(stacked) << stacked.error().message();
  auto r = store->export_docker_archive("stack:v1", path("docker.tar"));
  ASSERT_TRUE(r) << r.error().message();
  auto second = open_store("second");
  auto back = second->import_docker_archive(path("docker.tar"), "");
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->tags, std::vector<std::string>{"stack:v1"});
  EXPECT_EQ(back->config.diff_ids, stacked->config.diff_ids);
  EXPECT_EQ(back->manifest.config.digest, stacked->manifest.config.digest);
  if (find_program("skopeo").empty()) return;
  auto inspect = run_process({"skopeo", "inspect", "docker-archive:" + path("docker.tar").string()},
                             {.timeout = std::chrono::seconds(60)});
  ASSERT_TRUE(inspect && inspect->ok()) << (inspect ? inspect->err : "");
  EXPECT_NE(inspect->out.find(stacked->config.diff_ids[1].str()), std::string::npos)
      << inspect->out;
  EXPECT_FALSE(store->export_docker_archive("nope:1", path("nope.tar")));
  EXPECT_FALSE(fs::exists(path("nope.tar")));
}

TEST_F(ImageStoreTest, ProcessConfigNeedsACommand) {
  ImageConfig c;
  auto r = process_config(c, {});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("neither Entrypoint nor Cmd"), std::string::npos);
  c.cmd = {"sh"};
  c.user = "nobody";
  EXPECT_FALSE(process_config(c, {}));
  c.user = "7:8";
  auto p = process_config(c, {});
  ASSERT_TRUE(p);
  Json spec;
  apply_process_config(*p, spec);
  EXPECT_EQ(spec["process"]["user"]["uid"], 7);
  EXPECT_EQ(spec["process"]["user"]["gid"], 8);
  EXPECT_EQ(spec["process"]["cwd"], "/");
}

// Peers: an image made by umoci is imported; an exported one is read by skopeo.
TEST_F(ImageStoreTest, UmociLayoutImportsAndSkopeoReadsExport) {
  if (find_program("umoci").empty() || find_program("skopeo").empty())
    GTEST_SKIP() << "umoci or skopeo not installed (scripts/packages/image.txt)";
  RunOptions o{.timeout = std::chrono::seconds(60)};
  std::string layout = path("umoci").string();
  write(path("content/hello.txt"), "from umoci");
  for (auto argv : std::vector<std::vector<std::string>>{
           {"umoci", "init", "--layout", layout},
           {"umoci", "new", "--image", layout + ":t1"},
           {"umoci", "insert", "--rootless", "--image", layout + ":t1",
            path("content/hello.txt").string(), "/hello.txt"},
           {"umoci", "config", "--image", layout + ":t1", "--config.cmd", "/hello"}}) {
    auto r = run_process(argv, o);
    ASSERT_TRUE(r && r->ok()) << argv[1] << ": " << (r ? r->err : r.error().message());
  }
  auto store = open_store("store");
  auto image = store->import_oci_layout(layout, "fromumoci:t1");
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(image->config.cmd, std::vector<std::string>{"/hello"});
  auto layers = store->unpack("fromumoci:t1");
  ASSERT_TRUE(layers) << layers.error().message();
  EXPECT_EQ(*read_file(layers->back().dir / "hello.txt"), "from umoci");
  ASSERT_TRUE(store->export_oci_archive("fromumoci:t1", path("export.tar")));
  auto inspect = run_process(
      {"skopeo", "inspect", "--config", "oci-archive:" + path("export.tar").string()}, o);
  ASSERT_TRUE(inspect && inspect->ok()) << (inspect ? inspect->err : "");
  EXPECT_NE(inspect->out.find("/hello"), std::string::npos);
  auto docker = run_process({"skopeo", "copy", "oci-archive:" + path("export.tar").string(),
                             "docker-archive:" + path("docker.tar").string() + ":viaskopeo:1"},
                            o);
  ASSERT_TRUE(docker && docker->ok()) << (docker ? docker->err : "");
  auto second = open_store("second");
  auto imported = second->import_docker_archive(path("docker.tar"), "");
  ASSERT_TRUE(imported) << imported.error().message();
  // skopeo writes the Docker-normalized name.
  EXPECT_EQ(imported->tags, std::vector<std::string>{"docker.io/library/viaskopeo:1"});
}

}  // namespace
}  // namespace vireo::image
