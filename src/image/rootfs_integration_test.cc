// Root only: a busybox image (a rootfs tarball made by GNU tar from /bin/busybox) plus a layer
// with whiteouts, mounted as overlayfs and run with chroot.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "base/file.h"
#include "base/subprocess.h"
#include "image/image_store.h"
#include "image/tar_builder.h"
#include "image/test_util.h"

namespace vireo::image {
namespace {

namespace fs = std::filesystem;
using testing::TarBuilder;

class RootfsIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::is_root()) GTEST_SKIP() << "needs root (overlayfs, whiteout devices)";
    if (!fs::exists("/bin/busybox")) GTEST_SKIP() << "busybox-static not installed";
    fs::path rootfs = tmp_.path() / "src";
    fs::create_directories(rootfs / "bin");
    fs::create_directories(rootfs / "etc");
    fs::create_directories(rootfs / "opt");
    fs::copy_file("/bin/busybox", rootfs / "bin/busybox");
    for (const char* applet : {"sh", "ls", "cat", "echo"})
      fs::create_symlink("busybox", rootfs / "bin" / applet);
    testing::write_test_file(rootfs / "etc/removed", "gone soon");
    testing::write_test_file(rootfs / "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    testing::write_test_file(rootfs / "opt/old", "hidden by an opaque dir");
    fs::create_directories(tmp_.path() / "outside");
    fs::create_symlink(tmp_.path() / "outside", rootfs / "evil");
    auto tar = run_process(
        {"tar", "-C", rootfs.string(), "-czf", (tmp_.path() / "busybox.tar.gz").string(), "."},
        {.timeout = std::chrono::seconds(60)});
    ASSERT_TRUE(tar && tar->ok());
    auto s = ImageStore::create(tmp_.path() / "store", {.privileged = true});
    ASSERT_TRUE(s) << s.error().message();
    store_ = std::move(*s);
  }

  void TearDown() override {
    if (store_) (void)release_rootfs(tmp_.path() / "ctr");
  }

  testing::TempDir tmp_;
  std::unique_ptr<ImageStore> store_;
};

TEST_F(RootfsIntegrationTest, BusyboxRootfsTarMountsAsOverlayAndRuns) {
  auto image = store_->import_rootfs_tar(tmp_.path() / "busybox.tar.gz", "busybox:test");
  ASSERT_TRUE(image) << image.error().message();
  auto prepared = store_->prepare_rootfs("busybox:test", tmp_.path() / "ctr", RootfsMode::kAuto);
  ASSERT_TRUE(prepared) << prepared.error().message();
  EXPECT_TRUE(prepared->overlay);
  EXPECT_EQ(prepared->process.args, std::vector<std::string>{"/bin/sh"});
  auto out = run_process({"chroot", prepared->rootfs.string(), "/bin/sh", "-c",
                          "echo hello > /written; cat /etc/removed; ls /bin"},
                         {.timeout = std::chrono::seconds(30)});
  ASSERT_TRUE(out && out->ok()) << (out ? out->err : out.error().message());
  EXPECT_NE(out->out.find("gone soon"), std::string::npos);
  EXPECT_NE(out->out.find("busybox"), std::string::npos);
  // Writes land in the upper directory, never in the shared layer.
  EXPECT_EQ(*read_file(tmp_.path() / "ctr/upper/written"), "hello\n");
  EXPECT_FALSE(fs::exists(prepared->lower_dirs[0] / "written"));
  ASSERT_TRUE(release_rootfs(tmp_.path() / "ctr"));
  EXPECT_FALSE(fs::exists(tmp_.path() / "ctr"));
}

TEST_F(RootfsIntegrationTest, WhiteoutsAndOpaqueDirsAreHonouredByOverlay) {
  std::string base = *read_file(tmp_.path() / "busybox.tar.gz");
  std::string upper = TarBuilder()
                          .file("etc/.wh.removed", "")
                          .file("opt/.wh..wh..opq", "")
                          .file("opt/new", "new")
                          .file("etc/motd", "welcome\n")
                          .file("evil/passwd", "inside")
                          .build(testing::Compression::kZstd);
  testing::write_layout(tmp_.path() / "layout", {base, upper},
                        {{"Cmd", {"/bin/sh"}}, {"WorkingDir", "/opt"}});
  ASSERT_TRUE(store_->import_oci_layout(tmp_.path() / "layout", "stacked:1"));
  auto prepared = store_->prepare_rootfs("stacked:1", tmp_.path() / "ctr", RootfsMode::kOverlay);
  ASSERT_TRUE(prepared) << prepared.error().message();
  ASSERT_EQ(prepared->lower_dirs.size(), 2u);
  fs::path r = prepared->rootfs;
  EXPECT_FALSE(fs::exists(fs::symlink_status(r / "etc/removed")));
  EXPECT_FALSE(fs::exists(r / "opt/old"));
  EXPECT_EQ(*read_file(r / "opt/new"), "new");
  EXPECT_EQ(*read_file(r / "etc/motd"), "welcome\n");
  EXPECT_TRUE(fs::exists(r / "bin/busybox"));
  // The lower layer's symlink evil -> outside is shadowed by the upper layer's directory.
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(r / "evil")));
  EXPECT_EQ(*read_file(r / "evil/passwd"), "inside");
  EXPECT_TRUE(fs::is_empty(tmp_.path() / "outside"));
  auto out = run_process({"chroot", r.string(), "/bin/sh", "-c", "cd /opt && ls && cat /etc/motd"},
                         {.timeout = std::chrono::seconds(30)});
  ASSERT_TRUE(out && out->ok()) << (out ? out->err : out.error().message());
  EXPECT_EQ(out->out, "new\nwelcome\n");
  // The flattened copy shows the same tree.
  auto copy = store_->prepare_rootfs("stacked:1", tmp_.path() / "flat", RootfsMode::kCopy);
  ASSERT_TRUE(copy) << copy.error().message();
  EXPECT_FALSE(fs::exists(fs::symlink_status(copy->rootfs / "etc/removed")));
  EXPECT_FALSE(fs::exists(copy->rootfs / "opt/old"));
  EXPECT_EQ(*read_file(copy->rootfs / "opt/new"), "new");
  EXPECT_EQ(*read_file(copy->rootfs / "evil/passwd"), "inside");
  EXPECT_TRUE(fs::is_empty(tmp_.path() / "outside"));
  EXPECT_TRUE(release_rootfs(tmp_.path() / "flat"));
}

TEST_F(RootfsIntegrationTest, ManyLayersMountPastTheOptionPageLimit) {
  std::vector<std::string> layers;
  for (int i = 0; i < 80; ++i)
    layers.push_back(TarBuilder()
                         .file("layer" + std::to_string(i), "x")
                         .file("top", std::to_string(i))
                         .build(testing::Compression::kGzip));
  testing::write_layout(tmp_.path() / "layout", layers, {{"Cmd", {"/bin/sh"}}});
  ASSERT_TRUE(store_->import_oci_layout(tmp_.path() / "layout", "many:1"));
  auto prepared = store_->prepare_rootfs("many:1", tmp_.path() / "ctr", RootfsMode::kOverlay);
  ASSERT_TRUE(prepared) << prepared.error().message();
  EXPECT_TRUE(fs::exists(prepared->rootfs / "layer0"));
  EXPECT_TRUE(fs::exists(prepared->rootfs / "layer79"));
  EXPECT_EQ(*read_file(prepared->rootfs / "top"), "79");
}

}  // namespace
}  // namespace vireo::image
