// Root only: real builds on a busybox image (a rootfs tarball made by GNU tar from
// /bin/busybox), RUN steps through the vireo-runtime binary: the config an image gets, layers
// with OCI whiteouts and opaque directories, COPY/ADD with --chown, the layer cache, a failing
// RUN, cancellation, and hostile COPY/ADD sources — each failure leaving no tag, no scratch
// directory and no mount.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <fstream>
#include <set>
#include <sstream>

#include "base/file.h"
#include "base/subprocess.h"
#include "image/build/builder.h"
#include "image/build/layer_diff.h"
#include "image/image_store.h"
#include "image/tar_builder.h"
#include "image/test_util.h"

namespace vireo::image::build {
namespace {

namespace fs = std::filesystem;
using image::testing::TarBuilder;
using image::testing::write_test_file;

class Progress : public BuildProgress {
 public:
  void step(int index, int total, const std::string& text) override {
    steps.push_back(text);
    if (cancel_at == index) stop.request_stop();
    total_seen = total;
  }
  std::stop_token stop_token() const override { return stop.get_token(); }

  std::vector<std::string> steps;
  int total_seen = 0;
  int cancel_at = 0;
  std::stop_source stop;
};

class BuilderIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!image::testing::is_root()) GTEST_SKIP() << "needs root (overlayfs, containers)";
    if (!fs::exists("/bin/busybox")) GTEST_SKIP() << "busybox-static not installed";
    const char* bin = std::getenv("VIREO_BIN_DIR");
    runtime_ = fs::path(bin ? bin : "build/bin") / "vireo-runtime";
    if (!fs::exists(runtime_)) GTEST_SKIP() << runtime_ << " is not built";
    fs::path rootfs = tmp_.path() / "src";
    fs::create_directories(rootfs / "bin");
    fs::create_directories(rootfs / "etc");
    fs::create_directories(rootfs / "data");
    fs::copy_file("/bin/busybox", rootfs / "bin/busybox");
    fs::create_symlink("busybox", rootfs / "bin/sh");
    write_test_file(rootfs / "etc/passwd",
                    "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n");
    write_test_file(rootfs / "etc/group", "root:x:0:\nstaff:x:50:\n");
    write_test_file(rootfs / "data/old", "replaced by an opaque directory");
    auto tar = run_process(
        {"tar", "-C", rootfs.string(), "-czf", (tmp_.path() / "busybox.tar.gz").string(), "."},
        {.timeout = std::chrono::seconds(60)});
    ASSERT_TRUE(tar && tar->ok());
    auto s = ImageStore::create(tmp_.path() / "store", {.privileged = true});
    ASSERT_TRUE(s) << s.error().message();
    store_ = std::move(*s);
    ASSERT_TRUE(store_->import_rootfs_tar(tmp_.path() / "busybox.tar.gz", "busybox:1"));
    ctx_ = tmp_.path() / "ctx";
    fs::create_directories(ctx_);
  }

  void TearDown() override {
    if (store_) {
      (void)release_rootfs(tmp_.path() / "flat");
      ExpectNothingLeft();
    }
  }

  void containerfile(const std::string& text) { write_test_file(ctx_ / "Containerfile", text); }

  Result<BuildResult> build(const std::string& tag, bool no_cache = false,
                            std::map<std::string, std::string> args = {}) {
    BuildOptions o{ctx_ / "Containerfile", ctx_, tag, std::move(args), no_cache, runtime_};
    return image::build::build(*store_, o, progress_);
  }

  std::string error_of(const std::string& text) {
    containerfile(text);
    auto r = build("bad:1");
    EXPECT_FALSE(r) << text;
    if (r) return "";
    EXPECT_EQ(r.error().message().find('\n'), std::string::npos) << r.error().message();
    EXPECT_FALSE(store_->show("bad:1")) << "a failed build left a tag";
    ExpectNothingLeft();
    return r.error().message();
  }

  // No scratch directory and no mount under the store.
  void ExpectNothingLeft() {
    std::error_code ec;
    fs::path tmp = store_->root() / "build-tmp";
    if (fs::exists(tmp, ec)) {
      EXPECT_TRUE(fs::is_empty(tmp, ec)) << "scratch space left";
    }
    std::ifstream mounts("/proc/self/mountinfo");
    std::string line;
    while (std::getline(mounts, line))
      EXPECT_EQ(line.find(store_->root().string()), std::string::npos) << line;
  }

  // The entries of a layer blob: name → type ('f', 'd', 'l', 'h', 'c', ...), plus uid:gid.
  std::map<std::string, std::string> tar_entries(const Digest& blob) {
    std::map<std::string, std::string> out;
    archive* a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_all(a);
    EXPECT_EQ(archive_read_open_filename(a, store_->blobs().path_of(blob).c_str(), 65536),
              ARCHIVE_OK);
    archive_entry* e;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
      std::string type = archive_entry_hardlink(e)               ? "h"
                         : archive_entry_filetype(e) == AE_IFDIR ? "d"
                         : archive_entry_filetype(e) == AE_IFLNK ? "l"
                         : archive_entry_filetype(e) == AE_IFREG ? "f"
                                                                 : "o";
      out[archive_entry_pathname(e)] =
          fmt::format("{} {}:{}", type, archive_entry_uid(e), archive_entry_gid(e));
    }
    archive_read_free(a);
    return out;
  }

  std::string flat_file(const std::string& ref, const std::string& path) {
    (void)release_rootfs(tmp_.path() / "flat");
    auto p = store_->prepare_rootfs(ref, tmp_.path() / "flat", RootfsMode::kCopy);
    EXPECT_TRUE(p) << p.error().message();
    std::ifstream in(tmp_.path() / "flat/rootfs" / path);
    std::stringstream ss;
    ss << in.rdbuf();
    return in ? ss.str() : "<missing>";
  }

  image::testing::TempDir tmp_;
  std::unique_ptr<ImageStore> store_;
  fs::path runtime_, ctx_;
  Progress progress_;
};

TEST_F(BuilderIntegrationTest, BuildsConfigLayersWhiteoutsAndOwnership) {
  write_test_file(ctx_ / "hello.txt", "hello from the context\n");
  write_test_file(ctx_ / "files/a.txt", "a\n");
  write_test_file(ctx_ / "files/sub/b.txt", "b\n");
  write_test_file(ctx_ / "files/skip.log", "ignored\n");
  write_test_file(ctx_ / ".containerignore", "files/*.log\n");
  containerfile(
      "# syntax=docker/dockerfile:1\n"
      "FROM busybox:1\n"
      "ARG GREETING=hello\n"
      "ENV APP_HOME=/app \\\n"
      "    NAME=${GREETING}-world\n"
      "WORKDIR $APP_HOME\n"
      "COPY --chown=app:staff files/ ./files/\n"
      "COPY hello.txt /etc/hello.txt\n"
      "RUN echo \"$NAME $(pwd) $(id -u)\" > out.txt && rm /etc/hello.txt && \\\n"
      "    rm -rf /data && mkdir /data && echo new > /data/new\n"
      "USER app\n"
      "RUN [\"/bin/sh\", \"-c\", \"id -u\"]\n"
      "EXPOSE 8080 53/udp\n"
      "LABEL org.example.name=\"demo app\"\n"
      "CMD [\"sh\", \"-c\", \"cat out.txt\"]\n");
  auto r = build("demo:1", false, {{"GREETING", "hi"}});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->steps, 12);
  EXPECT_EQ(r->cached, 0);
  EXPECT_EQ(progress_.total_seen, 12);
  ASSERT_FALSE(progress_.steps.empty());
  EXPECT_EQ(progress_.steps[0], "step 1/12: FROM busybox:1");
  EXPECT_EQ(r->image.tags, std::vector<std::string>{"demo:1"});

  const ImageConfig& c = r->image.config;
  EXPECT_NE(std::find(c.env.begin(), c.env.end(), "APP_HOME=/app"), c.env.end());
  EXPECT_NE(std::find(c.env.begin(), c.env.end(), "NAME=hi-world"), c.env.end());
  for (const auto& e : c.env) EXPECT_FALSE(e.starts_with("GREETING=")) << "ARGs are not kept";
  EXPECT_EQ(c.working_dir, "/app");
  EXPECT_EQ(c.user, "app");
  EXPECT_EQ(c.cmd, (std::vector<std::string>{"sh", "-c", "cat out.txt"}));
  EXPECT_TRUE(c.raw["config"]["ExposedPorts"].contains("8080/tcp"));
  EXPECT_TRUE(c.raw["config"]["ExposedPorts"].contains("53/udp"));
  EXPECT_EQ(c.raw["config"]["Labels"]["org.example.name"], "demo app");
  // 1 base layer + COPY + COPY + RUN + RUN; a history entry per instruction after FROM (ARG
  // included) plus the base's.
  ASSERT_EQ(r->image.manifest.layers.size(), 5u);
  ASSERT_EQ(c.diff_ids.size(), 5u);
  EXPECT_EQ(c.raw["history"].size(), 1u + 11u);

  auto copy_layer = tar_entries(r->image.manifest.layers[1].digest);
  EXPECT_EQ(copy_layer["app/files/a.txt"], "f 1000:50");
  EXPECT_EQ(copy_layer["app/files/sub/b.txt"], "f 1000:50");
  EXPECT_FALSE(copy_layer.contains("app/files/skip.log"));
  auto run_layer = tar_entries(r->image.manifest.layers[3].digest);
  EXPECT_EQ(run_layer["etc/.wh.hello.txt"].substr(0, 1), "f") << "whiteout of a removed file";
  EXPECT_TRUE(run_layer.contains("data/.wh..wh..opq")) << "opaque directory";
  EXPECT_TRUE(run_layer.contains("app/out.txt"));
  for (const auto& [name, type] : run_layer) {
    EXPECT_FALSE(name.starts_with("proc")) << "runtime mount point in the layer: " << name;
    EXPECT_FALSE(name.starts_with("sys")) << name;
    EXPECT_NE(name, "etc/resolv.conf");
  }

  EXPECT_EQ(flat_file("demo:1", "app/out.txt"), "hi-world /app 0\n");
  EXPECT_EQ(flat_file("demo:1", "etc/hello.txt"), "<missing>");
  EXPECT_EQ(flat_file("demo:1", "data/old"), "<missing>");
  EXPECT_EQ(flat_file("demo:1", "data/new"), "new\n");
  ASSERT_EQ(r->log.size(), 12u);
  EXPECT_EQ(r->log[8].instruction, "RUN [\"/bin/sh\", \"-c\", \"id -u\"]");
  EXPECT_EQ(r->log[8].output, "1000\n");
  struct stat st;
  ASSERT_EQ(::stat((tmp_.path() / "flat/rootfs/app/files/a.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 50u);
}

TEST_F(BuilderIntegrationTest, UnchangedStepsComeFromTheCache) {
  write_test_file(ctx_ / "a.txt", "one\n");
  containerfile(
      "FROM busybox:1\nRUN echo built > /built\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy\n");
  auto first = build("cached:1");
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(first->cached, 0);
  auto second = build("cached:2");
  ASSERT_TRUE(second) << second.error().message();
  EXPECT_EQ(second->cached, 3);
  EXPECT_TRUE(second->log[1].cached);
  EXPECT_EQ(second->image.config.diff_ids, first->image.config.diff_ids);

  // A changed COPY source: that step and every later one run again.
  write_test_file(ctx_ / "a.txt", "two\n");
  auto third = build("cached:3");
  ASSERT_TRUE(third) << third.error().message();
  EXPECT_EQ(third->cached, 1);
  EXPECT_EQ(flat_file("cached:3", "copy"), "two\n");
  // A mode change alone is a change too.
  fs::permissions(ctx_ / "a.txt", fs::perms::owner_exec, fs::perm_options::add);
  auto fourth = build("cached:4");
  ASSERT_TRUE(fourth);
  EXPECT_EQ(fourth->cached, 1);

  auto none = build("cached:5", true);
  ASSERT_TRUE(none);
  EXPECT_EQ(none->cached, 0);

  // Prune removes the layers no image uses; their cache entries are then dropped, not used.
  ASSERT_TRUE(store_->remove("cached:1"));
  ASSERT_TRUE(store_->remove("cached:2"));
  ASSERT_TRUE(store_->remove("cached:3"));
  ASSERT_TRUE(store_->remove("cached:4"));
  ASSERT_TRUE(store_->remove("cached:5"));
  ASSERT_TRUE(store_->prune());
  auto after = build("cached:6");
  ASSERT_TRUE(after) << after.error().message();
  EXPECT_EQ(after->cached, 0);
  EXPECT_EQ(flat_file("cached:6", "copy"), "two\n");
}

TEST_F(BuilderIntegrationTest, FailingRunFailsWithOneLineAndLeavesNothing) {
  std::string msg = error_of(
      "FROM busybox:1\nENV A=1\nRUN echo first line; echo the-reason >&2; exit 3\nCMD sh\n");
  EXPECT_NE(msg.find("RUN step 3/4 'echo first line; echo the-reason >&2; exit 3' failed with "
                     "exit code 3"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("the-reason"), std::string::npos) << msg;
  EXPECT_NE(error_of("FROM busybox:1\nRUN [\"/no/such/program\"]\n").find("RUN step 2/2"),
            std::string::npos);
}

TEST_F(BuilderIntegrationTest, CancelledRunStopsTheContainerAndLeavesNothing) {
  containerfile("FROM busybox:1\nRUN sleep 60\n");
  progress_.cancel_at = 2;
  auto start = std::chrono::steady_clock::now();
  auto r = build("cancelled:1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCancelled) << r.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  EXPECT_FALSE(store_->show("cancelled:1"));
}

TEST_F(BuilderIntegrationTest, HostileAndMissingSourcesRefused) {
  fs::create_directories(tmp_.path() / "secret");
  write_test_file(tmp_.path() / "secret/key", "do not copy");
  fs::create_symlink(tmp_.path() / "secret", ctx_ / "abs-link");
  fs::create_symlink("../secret/key", ctx_ / "rel-link");
  write_test_file(ctx_ / "ignored.txt", "x");
  write_test_file(ctx_ / ".dockerignore", "ignored.txt\n");
  write_test_file(ctx_ / "evil.tar", TarBuilder().file("../escape", "x").build());
  write_test_file(ctx_ / "abs.tar", TarBuilder().file("ok", "x").file("/etc/evil", "x").build());

  EXPECT_NE(error_of("FROM busybox:1\nCOPY ../secret/key /k\n").find("outside the build context"),
            std::string::npos);
  EXPECT_NE(error_of("FROM busybox:1\nCOPY /etc/passwd /k\n").find("an absolute path"),
            std::string::npos);
  EXPECT_NE(error_of("FROM busybox:1\nCOPY abs-link/key /k\n").find("through a symlink"),
            std::string::npos);
  EXPECT_NE(error_of("FROM busybox:1\nCOPY rel-link /k\n").find("through a symlink"),
            std::string::npos);
  EXPECT_NE(error_of("FROM busybox:1\nCOPY nope /k\n").find("'nope' not found"), std::string::npos);
  EXPECT_NE(error_of("FROM busybox:1\nCOPY *.none /k/\n").find("no file in the build context"),
            std::string::npos);
  EXPECT_NE(error_of("FROM busybox:1\nCOPY ignored.txt /k\n").find("not found"), std::string::npos);
  EXPECT_NE(error_of("FROM busybox:1\nADD https://example.com/x /x\n").find("URLs are not"),
            std::string::npos);
  EXPECT_NE(error_of("FROM busybox:1\nADD evil.tar /opt/\n").find("'..'"), std::string::npos);
  EXPECT_NE(error_of("FROM busybox:1\nADD abs.tar /opt/\n").find("absolute path"),
            std::string::npos);
  EXPECT_NE(error_of("FROM busybox:1\nCOPY ignored.txt Containerfile /k\n").find("not found"),
            std::string::npos);
  EXPECT_NE(error_of("FROM nope:1\nRUN true\n").find("line 1: FROM nope:1: image nope:1 not found"),
            std::string::npos);
  EXPECT_NE(error_of("FROM busybox:1\nBOGUS x\n").find("line 2: unknown instruction 'BOGUS'"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(tmp_.path() / "escape"));
  EXPECT_FALSE(fs::exists("/etc/evil"));

  fs::remove(ctx_ / "Containerfile");
  auto missing = build("bad:1");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("Containerfile"), std::string::npos);
  write_test_file(ctx_ / "Containerfile", "");
  auto empty = build("bad:1");
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message().find("empty"), std::string::npos);
}

TEST_F(BuilderIntegrationTest, AddExtractsArchivesAndCopiesOtherFiles) {
  write_test_file(ctx_ / "app.tar.gz", TarBuilder()
                                           .dir("app")
                                           .file("app/run.sh", "#!/bin/sh\necho run\n", 0755)
                                           .build(image::testing::Compression::kGzip));
  write_test_file(ctx_ / "plain.txt", "plain\n");
  containerfile(
      "FROM scratch\nADD app.tar.gz /opt/\nADD plain.txt /opt/plain.txt\n"
      "COPY [\"plain.txt\", \"/copied/\"]\nENTRYPOINT [\"/opt/app/run.sh\"]\n");
  auto r = build("added:1");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->image.manifest.layers.size(), 3u);
  EXPECT_EQ(flat_file("added:1", "opt/app/run.sh"), "#!/bin/sh\necho run\n");
  EXPECT_EQ(flat_file("added:1", "opt/plain.txt"), "plain\n");
  EXPECT_EQ(flat_file("added:1", "copied/plain.txt"), "plain\n");
  EXPECT_EQ(r->image.config.entrypoint, std::vector<std::string>{"/opt/app/run.sh"});
}

TEST_F(BuilderIntegrationTest, AddExtractsOverExistingDirectories) {
  write_test_file(ctx_ / "etc.tar", TarBuilder().dir("etc").file("etc/added", "added\n").build());
  containerfile("FROM busybox:1\nADD etc.tar /\n");
  auto r = build("over:1");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(flat_file("over:1", "etc/added"), "added\n");
  EXPECT_NE(flat_file("over:1", "etc/passwd"), "<missing>");
}

// RUN shares the host's network namespace (package installs need it) and nothing else of it.
TEST_F(BuilderIntegrationTest, RunSharesTheHostNetworkNamespace) {
  containerfile(
      "FROM busybox:1\nRUN busybox readlink /proc/self/ns/net; busybox readlink "
      "/proc/self/ns/pid\n");
  auto r = build("net:1");
  ASSERT_TRUE(r) << r.error().message();
  auto host = [](const char* ns) { return fs::read_symlink(fmt::format("/proc/self/ns/{}", ns)); };
  EXPECT_NE(r->log[1].output.find(host("net").string()), std::string::npos) << r->log[1].output;
  EXPECT_EQ(r->log[1].output.find(host("pid").string()), std::string::npos) << r->log[1].output;
}

// layer_diff on a hand-made upper directory: overlayfs markers become OCI whiteouts, overlay
// attributes are dropped, a redirect refuses the diff, hard links stay links.
TEST_F(BuilderIntegrationTest, UpperDirectoryBecomesOciLayer) {
  fs::path upper = tmp_.path() / "upper";
  fs::create_directories(upper / "etc");
  fs::create_directories(upper / "opaque/sub");
  write_test_file(upper / "etc/file", "content");
  fs::create_hard_link(upper / "etc/file", upper / "etc/link");
  fs::create_symlink("/etc/file", upper / "sym");
  ASSERT_EQ(::mknod((upper / "etc/gone").c_str(), S_IFCHR | 0000, makedev(0, 0)), 0);
  ASSERT_EQ(::setxattr((upper / "opaque").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  ASSERT_EQ(::setxattr((upper / "etc/file").c_str(), "trusted.overlay.origin", "x", 1, 0), 0);
  ASSERT_EQ(::setxattr((upper / "etc/file").c_str(), "user.kept", "v", 1, 0), 0);
  auto layer = write_layer(upper, store_->blobs(), tmp_.path());
  ASSERT_TRUE(layer) << layer.error().message();
  auto entries = tar_entries(layer->blob.digest);
  EXPECT_EQ(entries["etc/.wh.gone"], "f 0:0");
  EXPECT_FALSE(entries.contains("etc/gone"));
  EXPECT_TRUE(entries.contains("opaque/.wh..wh..opq"));
  EXPECT_TRUE(entries.contains("opaque/sub/")) << "directories end in /";
  EXPECT_EQ(entries["etc/link"].substr(0, 1), "h");
  EXPECT_EQ(entries["sym"].substr(0, 1), "l");
  // The layer unpacks to the same markers overlayfs uses.
  auto unpacked = store_->layers().unpack(
      [reader = std::make_shared<BlobReader>(*store_->blobs().open(layer->blob.digest))](
          void* b, size_t n) { return reader->read(b, n); },
      layer->diff_id);
  ASSERT_TRUE(unpacked) << unpacked.error().message();
  struct stat st;
  ASSERT_EQ(::lstat((unpacked->dir / "etc/gone").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  char value[8] = {};
  EXPECT_EQ(::getxattr((unpacked->dir / "etc/file").c_str(), "user.kept", value, sizeof value), 1);
  EXPECT_LT(::getxattr((unpacked->dir / "etc/file").c_str(), "trusted.overlay.origin", value,
                       sizeof value),
            0);

  ASSERT_EQ(::setxattr((upper / "opaque/sub").c_str(), "trusted.overlay.redirect", "/x", 2, 0), 0);
  auto refused = write_layer(upper, store_->blobs(), tmp_.path());
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("redirect"), std::string::npos);
}

}  // namespace
}  // namespace vireo::image::build
