// Images through vireod and the CLI: a root file system tar made from /bin/busybox imported,
// listed, shown, tagged (also under a repository path with '/'), exported as an OCI layout that
// skopeo reads and as an OCI archive, both imported again with the same digest, a docker save
// archive made by skopeo imported by type detection, removed and pruned, each change a
// lifecycle event; and input the daemon must refuse with one line and nothing stored.
#include <gtest/gtest.h>

#include <fmt/ranges.h>

#include <future>
#include <thread>

#include "base/json.h"
#include "cli_expect.h"
#include "client/client.h"
#include "daemon_process.h"
#include "test_peers.h"

namespace vireo::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class ImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(d.start()) << "vireod did not start";
    rootfs_tar = (d.dir() / "busybox.tar").string();
    fs::path rootfs = d.dir() / "rootfs";
    fs::create_directories(rootfs / "bin");
    fs::copy_file("/bin/busybox", rootfs / "bin" / "busybox");
    fs::create_symlink("busybox", rootfs / "bin" / "sh");
    auto r = run({"tar", "-C", rootfs.string(), "-cf", rootfs_tar, "."});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  Json json(std::vector<std::string> args) const { return cli_json(d, std::move(args)); }

  std::string digest_of(const std::string& ref) const {
    return json({"image", "show", ref}).value("digest", "");
  }

  std::vector<std::string> all_tags() const {
    std::vector<std::string> out;
    for (const auto& img : json({"image", "ls"}))
      for (const auto& t : img.value("tags", Json::array())) out.push_back(t);
    std::sort(out.begin(), out.end());
    return out;
  }

  void expect_refused(const std::vector<std::string>& args, const std::string& needle = "") {
    testing::expect_refused(d, args, needle);
  }

  DaemonProcess d;
  std::string rootfs_tar;
};

TEST_F(ImageTest, RootfsTarImportedListedShownTaggedExportedAndReimported) {
  auto r = d.cli({"image", "import", rootfs_tar, "--tag", "busybox:1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(all_tags(), std::vector<std::string>{"busybox:1"});
  auto table = d.cli({"image", "ls"});
  EXPECT_NE(table.out.find("busybox:1"), std::string::npos) << table.out;

  Json shown = json({"image", "show", "busybox:1"});
  const std::string digest = shown.value("digest", "");
  EXPECT_TRUE(digest.starts_with("sha256:")) << shown.dump();
  ASSERT_EQ(shown.value("layers", Json::array()).size(), 1u) << shown.dump();
  EXPECT_TRUE(shown["layers"][0].value("digest", "").starts_with("sha256:"));
  EXPECT_GT(shown.value("size", 0ull), 500000ull);  // busybox-static is ~1-2 MB
  EXPECT_EQ(shown.value("os", ""), "linux");

  // A second name, also one with a repository path (sent as ?ref=).
  ASSERT_EQ(d.cli({"image", "tag", "busybox:1", "busybox:latest"}).exit_code, 0);
  ASSERT_EQ(d.cli({"image", "tag", "busybox:1", "team/tools/busybox:v2"}).exit_code, 0);
  EXPECT_EQ(digest_of("busybox"), digest);
  EXPECT_EQ(digest_of("team/tools/busybox:v2"), digest);
  EXPECT_EQ(all_tags(),
            (std::vector<std::string>{"busybox:1", "busybox:latest", "team/tools/busybox:v2"}));

  // An OCI layout that skopeo reads, imported again (type detected) with the same digest.
  const std::string layout = (d.dir() / "layout").string();
  r = d.cli({"image", "export", "busybox:1", "--type", "oci-layout", "--output", layout});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto inspect = run({"skopeo", "inspect", "oci:" + layout + ":1"});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  Json info = parse_json(inspect.out).value_or(Json());
  EXPECT_EQ(info.value("Digest", ""), digest) << inspect.out;
  EXPECT_EQ(info.value("Layers", Json::array()).size(), 1u) << inspect.out;
  ASSERT_EQ(d.cli({"image", "import", layout, "--tag", "copy:layout"}).exit_code, 0);
  EXPECT_EQ(digest_of("copy:layout"), digest);

  // The same as an OCI archive, through a repository path.
  const std::string archive = (d.dir() / "busybox-oci.tar").string();
  r = d.cli(
      {"image", "export", "team/tools/busybox:v2", "--type", "oci-archive", "--output", archive});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = d.cli({"image", "import", archive, "--tag", "copy:archive"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(digest_of("copy:archive"), digest);

  // A docker save archive (same digest once imported again) and a flattened rootfs tar.
  const std::string saved = (d.dir() / "busybox-docker.tar").string();
  r = d.cli({"image", "export", "busybox:1", "--type", "docker-archive", "--output", saved});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(d.cli({"image", "import", saved, "--tag", "copy:docker"}).exit_code, 0);
  EXPECT_EQ(digest_of("copy:docker"), digest);
  const std::string flat = (d.dir() / "busybox-rootfs.tar").string();
  r = d.cli({"image", "export", "busybox:1", "--type", "rootfs-tar", "--output", flat});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto listing = run({"tar", "-tf", flat});
  EXPECT_NE(listing.out.find("bin/busybox"), std::string::npos) << listing.out;
  EXPECT_EQ(json({"image", "show", "copy:archive"}).value("tags", Json::array()).size(), 6u);
}

// skopeo turns the exported layout into a `docker save` archive; imported without --tag, the
// type is detected and its RepoTags entry names it, with the same layer content.
TEST_F(ImageTest, DockerArchiveDetectedAndNamedByItsRepoTags) {
  ASSERT_EQ(d.cli({"image", "import", rootfs_tar, "--tag", "busybox:1"}).exit_code, 0);
  const std::string layout = (d.dir() / "layout").string();
  ASSERT_EQ(d.cli({"image", "export", "busybox:1", "--output", layout}).exit_code, 0);
  const std::string saved = (d.dir() / "saved.tar").string();
  auto r = run({"skopeo", "copy", "--quiet", "oci:" + layout + ":1",
                "docker-archive:" + saved + ":saved/busybox:7"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = d.cli({"image", "import", saved});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // skopeo writes the name it was given in its normalized form.
  Json original = json({"image", "show", "busybox:1"});
  Json imported = json({"image", "show", "docker.io/saved/busybox:7"});
  ASSERT_TRUE(imported.is_object());
  EXPECT_EQ(imported.value("diff_ids", Json::array()), original.value("diff_ids", Json()));
  Json tags = imported.value("tags", Json::array());
  EXPECT_NE(std::find(tags.begin(), tags.end(), "docker.io/saved/busybox:7"), tags.end())
      << tags.dump();
}

// A compressed file is a root file system whatever it holds; the layer content is the same.
TEST_F(ImageTest, GzipRootfsTarDetectedWithTheSameLayerContent) {
  ASSERT_EQ(d.cli({"image", "import", rootfs_tar, "--tag", "plain:1"}).exit_code, 0);
  auto r = run({"gzip", "-k", rootfs_tar});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = d.cli({"image", "import", rootfs_tar + ".gz", "--tag", "gzipped:1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json({"image", "show", "gzipped:1"}).value("diff_ids", Json::array()),
            json({"image", "show", "plain:1"}).value("diff_ids", Json()));
}

TEST_F(ImageTest, RemovedImageIsPrunedAndItsBytesFreed) {
  ASSERT_EQ(d.cli({"image", "import", rootfs_tar, "--tag", "busybox:1"}).exit_code, 0);
  ASSERT_EQ(d.cli({"image", "tag", "busybox:1", "other:1"}).exit_code, 0);
  // Nothing to free while a tag reaches the image.
  EXPECT_EQ(json({"image", "prune"}).value("bytes_freed", 1ull), 0ull);
  ASSERT_EQ(d.cli({"image", "rm", "busybox:1"}).exit_code, 0);
  EXPECT_EQ(json({"image", "prune"}).value("bytes_freed", 1ull), 0ull);
  EXPECT_EQ(all_tags(), std::vector<std::string>{"other:1"});
  ASSERT_EQ(d.cli({"image", "rm", "other:1"}).exit_code, 0);
  EXPECT_TRUE(all_tags().empty());
  Json report = json({"image", "prune"});
  EXPECT_GT(report.value("bytes_freed", 0ull), 500000ull) << report.dump();
  EXPECT_GT(report.value("layers_removed", 0ull), 0ull) << report.dump();
  expect_refused({"image", "show", "busybox:1"}, "busybox:1");
}

TEST_F(ImageTest, ChangesAreLifecycleEvents) {
  LifecycleRecorder recorder(d, "images-pruned");
  ASSERT_TRUE(recorder.ready());
  EXPECT_EQ(d.cli({"image", "import", rootfs_tar, "--tag", "busybox:1"}).exit_code, 0);
  EXPECT_EQ(d.cli({"image", "tag", "busybox:1", "busybox:2"}).exit_code, 0);
  EXPECT_EQ(d.cli({"image", "export", "busybox:2", "--output", (d.dir() / "l").string()}).exit_code,
            0);
  EXPECT_EQ(d.cli({"image", "rm", "busybox:1"}).exit_code, 0);
  EXPECT_EQ(d.cli({"image", "rm", "busybox:2"}).exit_code, 0);
  EXPECT_EQ(d.cli({"image", "prune"}).exit_code, 0);
  EXPECT_EQ(recorder.events(),
            (std::vector<std::string>{
                "image-imported /1.0/images/busybox:1", "image-tagged /1.0/images/busybox:2",
                "image-exported /1.0/images/busybox:2", "image-deleted /1.0/images/busybox:1",
                "image-deleted /1.0/images/busybox:2", "images-pruned /1.0/images/prune"}));
}

TEST_F(ImageTest, BadInputIsRefusedWithOneLineAndNothingStored) {
  expect_refused({"image", "import", (d.dir() / "missing.tar").string(), "--tag", "x:1"},
                 "missing.tar");

  // A layer entry that climbs out of the root.
  fs::create_directories(d.dir() / "hostile" / "a");
  { std::ofstream(d.dir() / "hostile" / "escape") << "x\n"; }
  const std::string hostile = (d.dir() / "hostile.tar").string();
  auto r =
      run({"tar", "-C", (d.dir() / "hostile" / "a").string(), "-P", "-cf", hostile, "../escape"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_refused({"image", "import", hostile, "--tag", "evil:1"}, "..");
  EXPECT_TRUE(all_tags().empty());
  EXPECT_FALSE(fs::exists(d.root() / "escape"));
  EXPECT_FALSE(fs::exists(d.root() / "images" / "escape"));

  expect_refused({"image", "import", rootfs_tar, "--tag", "UPPER:x"}, "UPPER");
  expect_refused({"image", "import", rootfs_tar, "--tag", "a:b", "--type", "oci-layout"});
  EXPECT_TRUE(all_tags().empty());

  expect_refused({"image", "show", "nope:1"}, "nope");
  expect_refused({"image", "rm", "nope:1"}, "nope");
  expect_refused({"image", "tag", "nope:1", "other:1"}, "nope");
  expect_refused({"image", "export", "nope:1", "--output", (d.dir() / "out").string()}, "nope");
  expect_refused({"image", "show", "a?b"}, "invalid image reference");
  EXPECT_FALSE(fs::exists(d.dir() / "out"));

  auto c = client::Client::connect({.socket_path = d.socket()});
  ASSERT_TRUE(c) << c.error().message();
  auto reply = (*c)->request("GET", "/1.0/images/nope:1");
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ErrorCode::kNotFound) << reply.error().message();
  Json bad = {{"source", {{"type", "rootfs-tar"}, {"path", "relative.tar"}}}, {"tag", "x:1"}};
  reply = (*c)->request("POST", "/1.0/images", &bad);
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ErrorCode::kInvalidArgument) << reply.error().message();
}

// Push to vireo-registry and pull back through vireod: the operation reports progress, the
// pulled image has the pushed digest, and registry errors come back as one line.
TEST_F(ImageTest, PushedToARegistryAndPulledBack) {
  ReadyProcess registry("vireo-registry",
                        {"--root", (d.dir() / "registry").string(), "--listen", "127.0.0.1:0"});
  ASSERT_TRUE(registry.ready());
  std::string url = registry.ready_line().substr(registry.ready_line().find("://") + 3);
  ASSERT_EQ(d.cli({"image", "import", rootfs_tar, "--tag", "busybox:1"}).exit_code, 0);
  const std::string digest = digest_of("busybox:1");
  const std::string remote = url + "/library/busybox:1";

  Json pushed = json({"image", "push", "busybox:1", remote});
  EXPECT_EQ(pushed.value("digest", ""), digest) << pushed.dump();
  EXPECT_EQ(pushed.value("blobs_sent", 0), 2) << pushed.dump();
  auto inspect = run({"skopeo", "inspect", "--tls-verify=false", "docker://" + remote});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_EQ(parse_json(inspect.out).value_or(Json()).value("Digest", ""), digest);

  Json pulled = json({"image", "pull", remote});
  EXPECT_EQ(pulled.value("digest", ""), digest) << pulled.dump();
  EXPECT_EQ(digest_of(remote), digest);
  json({"image", "pull", remote, "--tag", "again:2"});
  EXPECT_EQ(digest_of("again:2"), digest);

  expect_refused({"image", "pull", url + "/library/none:1"}, "NAME_UNKNOWN");
  expect_refused({"image", "pull", url + "/library/busybox:9"}, "MANIFEST_UNKNOWN");
  expect_refused({"image", "push", "nothere:1", remote}, "nothere");
  expect_refused({"image", "push", "busybox:1", url + "/UPPER/case:1"}, "lowercase");
  expect_refused({"image", "pull", "127.0.0.1:1/x:1"}, "127.0.0.1:1");
  // An image named like a route of its own (/1.0/images/build, /pull, /prune).
  for (const char* word : {"build", "pull", "prune"}) {
    ASSERT_EQ(d.cli({"image", "tag", "busybox:1", word}).exit_code, 0) << word;
    EXPECT_EQ(digest_of(word), digest) << word;
    EXPECT_EQ(d.cli({"image", "rm", word}).exit_code, 0) << word;
  }
}

}  // namespace
}  // namespace vireo::testing
