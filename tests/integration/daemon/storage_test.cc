// Storage pools and volumes through vireod and the CLI, with real NBD peers: the default pool,
// a thin pool and a volume, nbdinfo and qemu-io on the URI `vol show` prints, a snapshot, a
// kill -9 of vireod that NBD clients do not notice, a restarted vireod adopting the same
// vireo-storaged, and input the daemon must refuse.
#include <gtest/gtest.h>

#include <signal.h>

#include <thread>

#include <fmt/ranges.h>

#include "base/file.h"
#include "base/json.h"
#include "cli_expect.h"
#include "daemon_process.h"

namespace vireo::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

bool alive(int pid) {
  auto stat = read_file(fmt::format("/proc/{}/stat", pid));
  if (!stat) return false;
  auto paren = stat->rfind(')');
  return paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] != 'Z';
}

class StorageTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(d.start()) << "vireod did not start"; }

  int storaged_pid() const { return d.storaged_pid(); }

  Json json(std::vector<std::string> args) const { return cli_json(d, std::move(args)); }

  static std::vector<std::string> names(const Json& list) {
    std::vector<std::string> out;
    for (const auto& item : list) out.push_back(item.value("name", ""));
    return out;
  }

  void expect_refused(const std::vector<std::string>& args, const std::string& needle = "") {
    testing::expect_refused(d, args, needle);
  }

  DaemonProcess d;
};

TEST_F(StorageTest, DefaultPoolExistsOnFirstStart) {
  Json pools = json({"pool", "ls"});
  ASSERT_EQ(names(pools), std::vector<std::string>{"default"});
  EXPECT_EQ(pools[0].value("type", ""), "dir");
  EXPECT_EQ(pools[0].value("path", ""), (d.root() / "storage" / "pools" / "default").string());
  EXPECT_TRUE(fs::is_directory(d.root() / "storage" / "pools" / "default"));
  EXPECT_GT(storaged_pid(), 0);
  // Volumes in the default pool work as they are.
  ASSERT_EQ(d.cli({"vol", "create", "default/disk", "--size", "16M"}).exit_code, 0);
  EXPECT_EQ(json({"vol", "show", "default/disk"}).value("size", 0ull), 16ull << 20);
}

TEST_F(StorageTest, ThinVolumeServedOverNbdSurvivesKillNineAndIsAdopted) {
  const std::string file = (d.dir() / "thin.pool").string();
  auto r = d.cli({"pool", "create", "fast", "--type", "thin", "--path", file, "--size", "1G"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = d.cli({"vol", "create", "fast/v1", "--size", "64M"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // The table form prints the URI; the JSON form carries the same.
  r = d.cli({"vol", "show", "fast/v1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string uri = json({"vol", "show", "fast/v1"}).value("uri", "");
  ASSERT_TRUE(uri.starts_with("nbd+unix:///fast/v1?socket=")) << uri;
  EXPECT_NE(r.out.find(uri), std::string::npos) << r.out;

  auto info = run({"nbdinfo", uri});
  ASSERT_TRUE(info.ok()) << info.err;
  EXPECT_NE(info.out.find("67108864"), std::string::npos) << info.out;
  auto io = run({"qemu-io", "-f", "raw", "-c", "write -P 0xab 0 1M", uri});
  ASSERT_TRUE(io.ok()) << io.out << io.err;

  r = d.cli({"vol", "snapshot", "fast/v1", "s1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json vols = json({"vol", "ls", "fast"});
  EXPECT_EQ(names(vols), (std::vector<std::string>{"s1", "v1"}));
  Json snap = json({"vol", "show", "fast/s1"});
  EXPECT_TRUE(snap.value("read_only", false));
  const std::string snap_uri = snap.value("uri", "");
  io = run({"qemu-io", "-f", "raw", "-c", "write -P 0xcd 0 1M", uri});
  ASSERT_TRUE(io.ok()) << io.out << io.err;

  // vireod dies hard; vireo-storaged and its exports do not notice.
  const int storaged = storaged_pid();
  d.kill();
  ASSERT_TRUE(alive(storaged));
  info = run({"nbdinfo", uri});
  EXPECT_TRUE(info.ok()) << info.err;
  io = run({"qemu-io", "-r", "-f", "raw", "-c", "read -P 0xab 0 1M", snap_uri});
  EXPECT_TRUE(io.ok()) << io.out << io.err;
  EXPECT_EQ(io.out.find("Pattern verification failed"), std::string::npos) << io.out;
  io = run({"qemu-io", "-r", "-f", "raw", "-c", "read -P 0xcd 0 1M", uri});
  EXPECT_EQ(io.out.find("Pattern verification failed"), std::string::npos) << io.out;

  // The restarted vireod adopts the same vireo-storaged and sees the same pools.
  ASSERT_TRUE(d.start());
  EXPECT_EQ(storaged_pid(), storaged);
  EXPECT_EQ(names(json({"pool", "ls"})), (std::vector<std::string>{"default", "fast"}));
  EXPECT_EQ(json({"vol", "show", "fast/v1"}).value("uri", ""), uri);

  EXPECT_EQ(d.cli({"vol", "rm", "fast/s1"}).exit_code, 0);
  EXPECT_EQ(d.cli({"vol", "rm", "fast/v1"}).exit_code, 0);
  EXPECT_EQ(d.cli({"pool", "check", "fast"}).exit_code, 0);
  r = d.cli({"pool", "rm", "fast"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(file));
}

// vol import / export are operations (they copy data off the API thread): a qemu-made qcow2
// image into a thin volume and a dir-pool qcow2 volume, back out as raw and qcow2, equal to the
// original by qemu-img compare.
TEST_F(StorageTest, ImportAndExportDiskImages) {
  const std::string image = (d.dir() / "src.qcow2").string();
  ASSERT_TRUE(run({"qemu-img", "create", "-q", "-f", "qcow2", image, "48M"}).ok());
  auto io = run(
      {"qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 3M", "-c", "write -P 0xa5 40M 1M", image});
  ASSERT_TRUE(io.ok()) << io.err;
  const std::string file = (d.dir() / "thin.pool").string();
  ASSERT_EQ(
      d.cli({"pool", "create", "fast", "--type", "thin", "--path", file, "--size", "1G"}).exit_code,
      0);

  auto r = d.cli({"vol", "import", "fast/img", image});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json v = json({"vol", "show", "fast/img"});
  EXPECT_EQ(v.value("size", 0ull), 48ull << 20);
  EXPECT_EQ(v.value("allocated", 0ull), 4ull << 20) << "zero ranges are not copied";
  r = d.cli({"vol", "import", "default/q", image, "--format", "qcow2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json({"vol", "show", "default/q"}).value("format", ""), "qcow2");

  const std::string raw = (d.dir() / "out.raw").string();
  const std::string qcow2 = (d.dir() / "out.qcow2").string();
  r = d.cli({"vol", "export", "fast/img", raw});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = d.cli({"vol", "export", "default/q", qcow2, "--format", "qcow2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto cmp = run({"qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, raw});
  EXPECT_TRUE(cmp.ok()) << cmp.out << cmp.err;
  cmp = run({"qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", image, qcow2});
  EXPECT_TRUE(cmp.ok()) << cmp.out << cmp.err;
  auto check = run({"qemu-img", "check", qcow2});
  EXPECT_TRUE(check.ok()) << check.out << check.err;

  // Refused with one line, nothing made: a missing file, a relative path through the API, a
  // corrupt qcow2, a name in use, an export over an existing file.
  expect_refused({"vol", "import", "fast/x", (d.dir() / "nosuch.img").string()}, "nosuch.img");
  const fs::path corrupt = d.dir() / "corrupt.qcow2";
  {
    std::string bytes = "QFI\xfb" + std::string(508, '\xee');
    ASSERT_TRUE(write_file_atomic(corrupt, bytes));
  }
  expect_refused({"vol", "import", "fast/x", corrupt.string(), "--source-format", "qcow2"});
  expect_refused({"vol", "import", "fast/img", image}, "img");
  expect_refused({"vol", "export", "fast/img", raw}, "exists");
  expect_refused({"vol", "export", "fast/nosuch", (d.dir() / "n.raw").string()}, "nosuch");
  EXPECT_EQ(names(json({"vol", "ls", "fast"})), std::vector<std::string>{"img"});
  EXPECT_FALSE(fs::exists(d.dir() / "n.raw"));
  EXPECT_EQ(d.cli({"pool", "check", "fast"}).exit_code, 0);
}

TEST_F(StorageTest, BadInputIsRefusedWithOneLine) {
  ASSERT_EQ(d.cli({"vol", "create", "default/used", "--size", "1M"}).exit_code, 0);
  expect_refused({"vol", "create", "nosuchpool/v", "--size", "1G"}, "nosuchpool");
  expect_refused({"vol", "show", "default/nosuchvol"}, "nosuchvol");
  expect_refused({"pool", "show", "nosuchpool"}, "nosuchpool");
  expect_refused({"vol", "create", "default/v", "--size", "lots"});
  expect_refused({"vol", "create", "default/a/b", "--size", "1M"});
  expect_refused({"vol", "create", "default/..", "--size", "1M"});
  expect_refused({"vol", "create", "../x", "--size", "1M"});
  expect_refused({"pool", "create", "..", "--path", (d.dir() / "p").string()});
  expect_refused({"vol", "create", "default/used", "--size", "1M"}, "used");
  expect_refused({"pool", "rm", "default"}, "default");
  expect_refused({"vol", "snapshot", "default/nosuchvol", "s"});
  EXPECT_EQ(names(json({"vol", "ls", "default"})), std::vector<std::string>{"used"});
}

}  // namespace
}  // namespace vireo::testing
