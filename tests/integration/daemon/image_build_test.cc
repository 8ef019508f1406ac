// vireo image build through vireod and the CLI (root: overlay mounts and containers): a
// Containerfile with RUN, COPY, ENV, WORKDIR, USER, CMD built on a busybox image imported from
// /bin/busybox, shown by `vireo image show`, built again from the cache, exported and unpacked
// by umoci with its whiteouts applied, an "image-built" event;
// bad Containerfiles and a failing RUN refused with one line, exit status 1, no tag.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <future>
#include <thread>

#include "base/json.h"
#include "cli_expect.h"
#include "client/client.h"
#include "daemon_process.h"

namespace vireo::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

void write(const fs::path& p, const std::string& content) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << content;
}

class ImageBuildTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (overlay mounts, containers)";
    if (!fs::exists("/bin/busybox")) GTEST_SKIP() << "busybox-static not installed";
    ASSERT_TRUE(d.start()) << "vireod did not start";
    fs::path rootfs = d.dir() / "rootfs";
    fs::create_directories(rootfs / "bin");
    fs::create_directories(rootfs / "etc");
    fs::copy_file("/bin/busybox", rootfs / "bin" / "busybox");
    fs::create_symlink("busybox", rootfs / "bin" / "sh");
    write(rootfs / "etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n");
    const std::string tar = (d.dir() / "busybox.tar").string();
    auto r = run_process({"tar", "-C", rootfs.string(), "-cf", tar, "."}, {.timeout = 60s});
    ASSERT_TRUE(r && r->exit_code == 0);
    ASSERT_EQ(d.cli({"image", "import", tar, "--tag", "busybox:1"}).exit_code, 0);
    ctx = d.dir() / "ctx";
    write(ctx / "app/hello.txt", "hello\n");
  }

  Json json(std::vector<std::string> args) const { return cli_json(d, std::move(args)); }

  // Nothing half-made: no build scratch directory, no mount under the state root.
  void expect_nothing_left() {
    std::error_code ec;
    fs::path tmp = d.root() / "images/build-tmp";
    if (fs::exists(tmp, ec)) {
      EXPECT_TRUE(fs::is_empty(tmp, ec)) << "scratch left in " << tmp;
    }
    std::ifstream mounts("/proc/self/mountinfo");
    std::string line;
    while (std::getline(mounts, line))
      EXPECT_EQ(line.find(d.root().string()), std::string::npos) << line;
  }

  DaemonProcess d;
  fs::path ctx;
};

TEST_F(ImageBuildTest, BuildsShowsAndRebuildsFromTheCache) {
  write(ctx / "Containerfile",
        "FROM busybox:1\n"
        "ARG WHO=nobody\n"
        "ENV GREETING=hello\n"
        "WORKDIR /srv\n"
        "COPY --chown=app app/ ./app/\n"
        "RUN echo \"$GREETING $WHO\" > greeting && rm -f /etc/nothing\n"
        "USER app\n"
        "CMD [\"cat\", \"/srv/greeting\"]\n");

  auto built = d.cli({"image", "build", "-f", (ctx / "Containerfile").string(), "--tag", "app:1",
                      "--build-arg", "WHO=vireo", ctx.string()});
  ASSERT_EQ(built.exit_code, 0) << built.err;
  EXPECT_NE(built.out.find("step 6/8: RUN echo"), std::string::npos) << built.out;
  EXPECT_NE(built.out.find("built: 8 steps, 0 cached"), std::string::npos) << built.out;
  EXPECT_NE(built.out.find("app:1"), std::string::npos) << built.out;

  Json shown = json({"image", "show", "app:1"});
  ASSERT_EQ(shown.value("layers", Json::array()).size(), 3u) << shown.dump();
  const Json& p = shown["process"];
  EXPECT_EQ(p["cmd"], Json({"cat", "/srv/greeting"}));
  EXPECT_EQ(p["working_dir"], "/srv");
  EXPECT_EQ(p["user"], "app");
  bool env = false;
  for (const auto& e : p["env"]) env = env || e == "GREETING=hello";
  EXPECT_TRUE(env) << p.dump();

  // The same build again: the layer steps come from the cache (JSON output: the result).
  Json again = json({"image", "build", "--tag", "app:2", "--build-arg", "WHO=vireo", ctx.string()});
  EXPECT_EQ(again.value("steps", 0), 8);
  EXPECT_EQ(again.value("cached", 0), 2) << again.dump();
  EXPECT_EQ(again["diff_ids"], shown["diff_ids"]);
  // Another build argument changes the RUN step's environment: it runs again.
  Json other = json({"image", "build", "--tag", "app:3", "--build-arg", "WHO=you", ctx.string()});
  EXPECT_EQ(other.value("cached", -1), 1) << other.dump();
  // --no-cache runs everything.
  Json fresh = json({"image", "build", "--no-cache", "--tag", "app:4", ctx.string()});
  EXPECT_EQ(fresh.value("cached", -1), 0);
  expect_nothing_left();
}

// A peer reads what the build wrote: umoci unpacks the exported image with the whiteout of a
// file removed by RUN and the opaque directory of one replaced by RUN applied.
TEST_F(ImageBuildTest, ExportedBuildUnpackedByUmoci) {
  if (find_program("umoci").empty()) GTEST_SKIP() << "umoci not installed";
  write(ctx / "Containerfile",
        "FROM busybox:1\n"
        "RUN mkdir -p /opt && echo old > /opt/old && echo x > /etc/gone\n"
        "RUN rm /etc/gone && rm -rf /opt && mkdir /opt && echo new > /opt/new\n");
  ASSERT_EQ(d.cli({"image", "build", "--tag", "peer:1", ctx.string()}).exit_code, 0);
  const fs::path layout = d.dir() / "layout";
  auto exported =
      d.cli({"image", "export", "peer:1", "--type", "oci-layout", "--output", layout.string()});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  auto unpacked = run_process(
      {"umoci", "unpack", "--image", layout.string() + ":1", (d.dir() / "bundle").string()},
      {.timeout = 60s});
  ASSERT_TRUE(unpacked && unpacked->exit_code == 0) << (unpacked ? unpacked->err : "");
  const fs::path rootfs = d.dir() / "bundle/rootfs";
  EXPECT_TRUE(fs::exists(rootfs / "etc/passwd"));
  EXPECT_FALSE(fs::exists(rootfs / "etc/gone"));
  EXPECT_FALSE(fs::exists(rootfs / "opt/old"));
  EXPECT_TRUE(fs::exists(rootfs / "opt/new"));
}

TEST_F(ImageBuildTest, BuildIsALifecycleEvent) {
  write(ctx / "Containerfile", "FROM busybox:1\nLABEL a=b\n");
  LifecycleRecorder recorder(d, "image-built");
  ASSERT_TRUE(recorder.ready());
  EXPECT_EQ(d.cli({"image", "build", "--tag", "labelled:1", ctx.string()}).exit_code, 0);
  EXPECT_EQ(recorder.events(), std::vector<std::string>{"image-built /1.0/images/labelled:1"});
}

TEST_F(ImageBuildTest, BadContainerfilesAndFailingRunRefusedWithOneLine) {
  struct Case {
    std::string containerfile, says;
  } cases[] = {
      {"", "empty"},
      {"RUN true\n", "line 1: RUN before FROM"},
      {"FROM busybox:1\nFETCH x\n", "line 2: unknown instruction 'FETCH'"},
      {"FROM busybox:1\nCMD [\"sh\",\n", "malformed JSON form"},
      {"FROM nope:1\n", "image nope:1 not found"},
      {"FROM busybox:1\nCOPY ../etc/passwd /x\n", "outside the build context"},
      {"FROM busybox:1\nCOPY missing /x\n", "'missing' not found"},
      {"FROM busybox:1\nRUN echo the-reason; exit 7\n",
       "RUN step 2/2 'echo the-reason; exit 7' failed with exit code 7: the-reason"},
  };
  for (const auto& c : cases) {
    write(ctx / "Containerfile", c.containerfile);
    expect_refused(d, {"image", "build", "--tag", "bad:1", ctx.string()}, c.says);
  }
  expect_refused(
      d, {"image", "build", "-f", (ctx / "nope").string(), "--tag", "bad:1", ctx.string()}, "nope");
  expect_refused(d, {"image", "build", "--tag", "bad:1", (ctx / "missing-dir").string()},
                 "missing-dir");
  expect_refused(d, {"image", "build", "--tag", "UPPER:1", ctx.string()}, "UPPER");
  expect_refused(d, {"image", "build", "--build-arg", "novalue", ctx.string()}, "novalue");
  expect_refused(d, {"image", "show", "bad:1"}, "bad:1");
  expect_nothing_left();
}

}  // namespace
}  // namespace vireo::testing
