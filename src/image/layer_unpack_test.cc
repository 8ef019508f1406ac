#include "image/layer_unpack.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <fstream>

#include "base/fd.h"
#include "base/file.h"
#include "image/tar_builder.h"
#include "image/test_util.h"

namespace vireo::image {
namespace {

namespace fs = std::filesystem;
using testing::Compression;
using testing::TarBuilder;

ReadFn string_source(const std::string& data, size_t chunk = 4096) {
  auto pos = std::make_shared<size_t>(0);
  return [&data, pos, chunk](void* buf, size_t len) -> Result<size_t> {
    size_t n = std::min({len, chunk, data.size() - *pos});
    std::memcpy(buf, data.data() + *pos, n);
    *pos += n;
    return n;
  };
}

class UnpackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dest_ = tmp_.path() / "a" / "dest";
    outside_ = tmp_.path() / "outside";
    ASSERT_TRUE(make_dirs(dest_));
    ASSERT_TRUE(make_dirs(outside_));
    std::ofstream(outside_ / "victim") << "original";
  }

  Result<UnpackSummary> unpack(const std::string& tar, UnpackOptions o = {}) {
    Fd fd(::open(dest_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return unpack_tar(string_source(tar), fd.get(), o);
  }

  // A hostile archive fails naming the entry and leaves everything outside dest as it was.
  void expect_rejected(const std::string& tar, const std::string& entry) {
    auto r = unpack(tar);
    ASSERT_FALSE(r) << "entry " << entry << " was accepted";
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << r.error().message();
    EXPECT_NE(r.error().message().find("entry '" + entry + "'"), std::string::npos)
        << r.error().message();
    EXPECT_EQ(*read_file(outside_ / "victim"), "original");
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(outside_)) names.push_back(e.path().filename());
    EXPECT_EQ(names, std::vector<std::string>{"victim"});
    std::vector<std::string> top;
    for (const auto& e : fs::directory_iterator(tmp_.path())) top.push_back(e.path().filename());
    std::sort(top.begin(), top.end());
    EXPECT_EQ(top, (std::vector<std::string>{"a", "outside"}));
    EXPECT_FALSE(fs::exists(tmp_.path() / "a" / "escape"));
  }

  testing::TempDir tmp_;
  fs::path dest_, outside_;
};

TEST_F(UnpackTest, RejectsDotDotEscape) {
  expect_rejected(TarBuilder().file("ok", "x").file("../escape", "pwned").build(), "../escape");
}

TEST_F(UnpackTest, RejectsAbsolutePath) {
  std::string abs = (outside_ / "abs").string();
  expect_rejected(TarBuilder().file(abs, "pwned").build(), abs);
  expect_rejected(TarBuilder().file("/abs/path", "pwned").build(), "/abs/path");
}

TEST_F(UnpackTest, RejectsNestedDotDot) {
  expect_rejected(TarBuilder().dir("a").file("a/../../escape", "pwned").build(), "a/../../escape");
}

TEST_F(UnpackTest, RejectsWriteThroughPlantedSymlink) {
  expect_rejected(
      TarBuilder().symlink("evil", outside_.string()).file("evil/victim", "pwned").build(),
      "evil/victim");
  expect_rejected(TarBuilder().symlink("evil", "/etc").file("evil/passwd", "pwned").build(),
                  "evil/passwd");
}

TEST_F(UnpackTest, RejectsWriteThroughRelativeSymlink) {
  expect_rejected(TarBuilder().symlink("evil", "../../outside").file("evil/new", "pwned").build(),
                  "evil/new");
  expect_rejected(
      TarBuilder().dir("d").symlink("d/up", "../../..").file("d/up/outside/new", "x").build(),
      "d/up/outside/new");
}

TEST_F(UnpackTest, RejectsSymlinkThenDirectoryUnderIt) {
  expect_rejected(TarBuilder().symlink("evil", outside_.string()).dir("evil/sub").build(),
                  "evil/sub/");
}

TEST_F(UnpackTest, RejectsWhiteoutThroughSymlink) {
  expect_rejected(
      TarBuilder().symlink("evil", outside_.string()).file("evil/.wh.victim", "").build(),
      "evil/.wh.victim");
}

TEST_F(UnpackTest, RejectsHardlinkToAbsolutePath) {
  expect_rejected(TarBuilder().hardlink("x", "/etc/passwd").build(), "x");
  expect_rejected(TarBuilder().hardlink("x", (outside_ / "victim").string()).build(), "x");
}

TEST_F(UnpackTest, RejectsHardlinkOutsideTree) {
  expect_rejected(TarBuilder().hardlink("x", "../x").build(), "x");
  expect_rejected(TarBuilder().hardlink("x", "../../outside/victim").build(), "x");
}

TEST_F(UnpackTest, RejectsHardlinkThroughSymlink) {
  expect_rejected(TarBuilder().symlink("s", outside_.string()).hardlink("x", "s/victim").build(),
                  "x");
}

TEST_F(UnpackTest, RejectsHardlinkToMissingEntry) {
  auto r = unpack(TarBuilder().hardlink("x", "nothere").build());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("not in this archive"), std::string::npos);
}

TEST_F(UnpackTest, GarbageAndTruncatedInputFailCleanly) {
  auto r = unpack(std::string(3000, 'z'));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message().find('\n'), std::string::npos);
  std::string tar = TarBuilder().file("f", std::string(10000, 'x')).build();
  EXPECT_FALSE(unpack(tar.substr(0, 5000)));
  std::string gz = TarBuilder().file("f", std::string(10000, 'x')).build(Compression::kGzip);
  EXPECT_FALSE(unpack(gz.substr(0, gz.size() / 2)));
}

TEST_F(UnpackTest, StreamEndingRightAfterLastFileDataIsAccepted) {
  // As umoci insert writes them: no padding after the data, no end-of-archive blocks.
  std::string tar = TarBuilder().file("a", "first").file("b", "hi\n").build();
  std::string cut = tar.substr(0, 512 + 512 + 512 + 3);
  auto r = unpack(cut);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*read_file(dest_ / "b"), "hi\n");
  EXPECT_EQ(r->diff_id, digest_of(cut));
  EXPECT_FALSE(unpack(tar.substr(0, 512 + 512 + 512 + 2)));
}

TEST_F(UnpackTest, DecompressionBombsAreRefused) {
  // 64 MiB of zeros gzip to ~64 KiB.
  std::string bomb =
      TarBuilder().file("zeros", std::string(64 << 20, '\0')).build(Compression::kGzip);
  ASSERT_LT(bomb.size(), 1u << 20);
  auto big = unpack(bomb, {.max_bytes = 1 << 20});
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code(), ErrorCode::kTooLarge);
  EXPECT_NE(big.error().message().find("decompression bomb"), std::string::npos);
  TarBuilder many;
  for (int i = 0; i < 50; ++i) many.file("f" + std::to_string(i), "x");
  auto entries = unpack(many.build(Compression::kGzip), {.max_entries = 20});
  ASSERT_FALSE(entries);
  EXPECT_EQ(entries.error().code(), ErrorCode::kTooLarge);
  // Under the limits (and with the free-space default) the same archives unpack.
  EXPECT_TRUE(unpack(many.build(Compression::kGzip), {}));
  EXPECT_TRUE(unpack(bomb, {}));
}

TEST_F(UnpackTest, EmptyLayerIsValid) {
  for (auto c : {Compression::kNone, Compression::kGzip}) {
    auto r = unpack(TarBuilder().build(c));
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->entries, 0u);
  }
  EXPECT_FALSE(unpack(""));
}

TarBuilder normal_layer() {
  return TarBuilder()
      .dir("etc", 0755)
      .file("etc/hosts", "127.0.0.1 localhost\n", 0644)
      .file("bin/tool", "#!/bin/sh\n", 0755)
      .dir("ro", 0555)
      .file("ro/inside", "x", 0400)
      .symlink("abs", "/etc/passwd")
      .symlink("rel", "etc/hosts")
      .hardlink("etc/hosts2", "etc/hosts")
      .file("etc/.wh.removed", "")
      .dir("opaque")
      .file("opaque/.wh..wh..opq", "")
      .file("opaque/kept", "k")
      .mtime(1600000000)
      .file("old", "o");
}

void check_normal_layer(const fs::path& d) {
  struct stat st;
  EXPECT_EQ(*read_file(d / "etc/hosts"), "127.0.0.1 localhost\n");
  ASSERT_EQ(::stat((d / "bin/tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  ASSERT_EQ(::stat((d / "ro").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0555u);
  ASSERT_EQ(::stat((d / "ro/inside").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0400u);
  EXPECT_EQ(fs::read_symlink(d / "abs"), "/etc/passwd");
  EXPECT_EQ(fs::read_symlink(d / "rel"), "etc/hosts");
  struct stat a, b;
  ASSERT_EQ(::stat((d / "etc/hosts").c_str(), &a), 0);
  ASSERT_EQ(::stat((d / "etc/hosts2").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_nlink, 2u);
  ASSERT_EQ(::lstat((d / "old").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtime, 1600000000);
  EXPECT_EQ(*read_file(d / "opaque/kept"), "k");
  EXPECT_FALSE(fs::exists(d / "etc/.wh.removed"));
  EXPECT_FALSE(fs::exists(d / "opaque/.wh..wh..opq"));
}

TEST_F(UnpackTest, NormalLayerUnprivilegedRecordsWhiteouts) {
  std::string tar = normal_layer().build();
  auto r = unpack(tar, {.mode = UnpackMode::kLayer, .privileged = false});
  ASSERT_TRUE(r) << r.error().message();
  check_normal_layer(dest_);
  EXPECT_EQ(r->whiteouts, std::vector<std::string>{"etc/removed"});
  EXPECT_EQ(r->opaque_dirs, std::vector<std::string>{"opaque"});
  EXPECT_EQ(r->diff_id, digest_of(tar));
  EXPECT_EQ(r->tar_size, tar.size());
  EXPECT_FALSE(fs::exists(dest_ / "etc/removed"));
}

TEST_F(UnpackTest, NormalLayerPrivilegedMakesOverlayMarkers) {
  if (!testing::is_root()) GTEST_SKIP() << "needs root (whiteout devices, trusted xattrs)";
  auto r = unpack(normal_layer().build(), {.mode = UnpackMode::kLayer, .privileged = true});
  ASSERT_TRUE(r) << r.error().message();
  check_normal_layer(dest_);
  struct stat st;
  ASSERT_EQ(::lstat((dest_ / "etc/removed").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  char v[8] = {};
  if (r->opaque_dirs.empty()) {
    EXPECT_EQ(::getxattr((dest_ / "opaque").c_str(), "trusted.overlay.opaque", v, sizeof v), 1);
    EXPECT_EQ(v[0], 'y');
  }
}

TEST_F(UnpackTest, ArchiveModeTakesWhiteoutNamesLiterally) {
  auto r = unpack(TarBuilder().file(".wh.x", "lit").build(), {.mode = UnpackMode::kArchive});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*read_file(dest_ / ".wh.x"), "lit");
}

TEST_F(UnpackTest, CompressionDetectedByMagicWithSameDiffId) {
  TarBuilder b = TarBuilder().file("a", "hello").dir("d").file("d/b", std::string(100000, 'q'));
  std::string plain = b.build();
  for (auto c : {Compression::kGzip, Compression::kZstd}) {
    fs::remove_all(dest_);
    fs::create_directories(dest_);
    auto r = unpack(b.build(c));
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->diff_id, digest_of(plain));
    EXPECT_EQ(*read_file(dest_ / "d/b"), std::string(100000, 'q'));
    EXPECT_EQ(*tar_diff_id(string_source(b.build(c))), digest_of(plain));
  }
}

TEST_F(UnpackTest, LaterEntryReplacesEarlierOne) {
  auto r = unpack(TarBuilder()
                      .file("f", "one")
                      .file("f", "two")
                      .symlink("s", "/x")
                      .dir("s")
                      .file("s/in", "ok")
                      .build());
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*read_file(dest_ / "f"), "two");
  auto dir_then_link = unpack(TarBuilder().dir("x").file("x/in", "1").symlink("x", "/etc").build());
  ASSERT_TRUE(dir_then_link) << dir_then_link.error().message();
  EXPECT_EQ(fs::read_symlink(dest_ / "x"), "/etc");
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(dest_ / "s")));
  EXPECT_EQ(*read_file(dest_ / "s/in"), "ok");
}

TEST_F(UnpackTest, DeviceNodesNeedPrivilege) {
  std::string tar = TarBuilder().device("null", S_IFCHR, 1, 3).build();
  auto r = unpack(tar, {.mode = UnpackMode::kLayer, .privileged = false});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->skipped, 1u);
  EXPECT_FALSE(fs::exists(fs::symlink_status(dest_ / "null")));
  if (!testing::is_root()) return;
  auto p = unpack(tar, {.mode = UnpackMode::kLayer, .privileged = true});
  ASSERT_TRUE(p) << p.error().message();
  struct stat st;
  ASSERT_EQ(::lstat((dest_ / "null").c_str(), &st), 0);
  EXPECT_EQ(st.st_rdev, makedev(1, 3));
}

TEST_F(UnpackTest, UserXattrsAreApplied) {
  auto r = unpack(TarBuilder().xattr("user.test", "v1").file("f", "x").build());
  ASSERT_TRUE(r) << r.error().message();
  char v[8] = {};
  ssize_t n = ::getxattr((dest_ / "f").c_str(), "user.test", v, sizeof v);
  if (n < 0 && errno == ENOTSUP) GTEST_SKIP() << "no user xattrs on this file system";
  EXPECT_EQ(std::string(v, size_t(std::max<ssize_t>(n, 0))), "v1");
}

}  // namespace
}  // namespace vireo::image
