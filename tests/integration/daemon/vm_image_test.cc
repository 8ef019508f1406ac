// VM disk images through vireod and the CLI: the test guest's boot disk (raw, and converted to
// qcow2 by qemu-img) imported by content detection, listed and shown as type vm, exported as an
// OCI archive and imported again, pushed to vireo-registry and pulled back, removed and pruned;
// VMs created from each with `vm create --image` booting through SeaBIOS; and what must be
// refused with one line and nothing left behind (a corrupt qcow2, a VM image as a container, a
// container image or a missing one as --image, a failure after the disk was copied).
#include <gtest/gtest.h>

#include <fstream>

#include "base/json.h"
#include "cli_expect.h"
#include "daemon_process.h"
#include "guest.h"
#include "guest_shell.h"
#include "test_peers.h"

namespace vireo::testing {
namespace {

namespace fs = std::filesystem;

class VmImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(d.start()) << "vireod did not start";
    raw = guest().boot_disk;
    qcow2 = (d.dir() / "boot.qcow2").string();
    auto r = run({"qemu-img", "convert", "-O", "qcow2", raw, qcow2});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  Json json(std::vector<std::string> args) const { return cli_json(d, std::move(args)); }
  void expect_refused(const std::vector<std::string>& args, const std::string& says = "") {
    testing::expect_refused(d, args, says);
  }
  // What a refusal must not have left: no VM, no volume, no tag, no new blob.
  size_t blob_count() const {
    size_t n = 0;
    std::error_code ec;
    for (auto it = fs::directory_iterator(d.root() / "images" / "blobs" / "sha256", ec);
         it != fs::directory_iterator(); it.increment(ec))
      ++n;
    return n;
  }
  Json vms() const { return json({"vm", "ls"}); }
  bool volume_exists(const std::string& v) const {
    return d.cli({"vol", "show", "default/" + v}).exit_code == 0;
  }

  DaemonProcess d;
  std::string raw, qcow2;
};

TEST_F(VmImageTest, DiskImagesAreImportedShownExportedTransferredAndPruned) {
  // Detected by content: boot.img has an MBR boot signature, the conversion the qcow2 magic.
  Json r = json({"image", "import", raw, "--tag", "deb-raw"});
  EXPECT_EQ(r.value("type", ""), "vm") << r.dump();
  EXPECT_EQ(r["disk"].value("format", ""), "raw") << r.dump();
  EXPECT_EQ(r["disk"].value("virtual_size", 0ull), fs::file_size(raw));
  ASSERT_EQ(r.value("layers", Json::array()).size(), 1u);
  EXPECT_EQ(r["layers"][0].value("media_type", ""), "application/vnd.vireo.vm.disk.raw");
  EXPECT_EQ(r["config"].value("media_type", ""), "application/vnd.vireo.vm.config.v1+json");
  EXPECT_EQ(r["layers"][0].value("size", 0ull), fs::file_size(raw));
  Json q = json({"image", "import", qcow2, "--tag", "deb-vm"});
  EXPECT_EQ(q["disk"].value("format", ""), "qcow2") << q.dump();
  EXPECT_EQ(q["disk"].value("virtual_size", 0ull), fs::file_size(raw));
  EXPECT_EQ(q["layers"][0].value("size", 0ull), fs::file_size(qcow2));
  Json forced = json({"image", "import", qcow2, "--type", "raw", "--tag", "forced"});
  EXPECT_EQ(forced["disk"].value("format", ""), "raw");
  EXPECT_EQ(forced["disk"].value("virtual_size", 0ull), fs::file_size(qcow2));

  auto table = d.cli({"image", "ls"});
  EXPECT_NE(table.out.find("TYPE"), std::string::npos) << table.out;
  const auto row = table.out.find("deb-vm:latest");
  ASSERT_NE(row, std::string::npos) << table.out;
  EXPECT_NE(table.out.substr(row, table.out.find('\n', row) - row).find(" vm "), std::string::npos)
      << table.out;
  auto shown = d.cli({"image", "show", "deb-vm"});
  EXPECT_NE(shown.out.find("qcow2, virtual size"), std::string::npos) << shown.out;

  // Exported as an OCI archive and imported again: the same image. Not as a container's.
  const std::string archive = (d.dir() / "deb-vm.tar").string();
  ASSERT_EQ(d.cli({"image", "export", "deb-vm", "--type", "oci-archive", "-o", archive}).exit_code,
            0);
  Json again = json({"image", "import", archive, "--tag", "again"});
  EXPECT_EQ(again.value("digest", ""), q.value("digest", ""));
  EXPECT_EQ(again.value("type", ""), "vm");
  expect_refused(
      {"image", "export", "deb-vm", "--type", "docker-archive", "-o", (d.dir() / "x.tar").string()},
      "VM disk image");
  expect_refused(
      {"image", "export", "deb-vm", "--type", "rootfs-tar", "-o", (d.dir() / "y.tar").string()},
      "VM disk image");
  EXPECT_FALSE(fs::exists(d.dir() / "x.tar"));

  // To a registry as an OCI artifact and back.
  ReadyProcess registry("vireo-registry",
                        {"--root", (d.dir() / "registry").string(), "--listen", "127.0.0.1:0"});
  ASSERT_TRUE(registry.ready());
  const std::string url = registry.ready_line().substr(registry.ready_line().find("://") + 3);
  Json pushed = json({"image", "push", "deb-vm", url + "/vms/deb:1"});
  EXPECT_EQ(pushed.value("digest", ""), q.value("digest", "")) << pushed.dump();
  EXPECT_EQ(pushed.value("blobs_sent", 0), 2) << pushed.dump();
  for (const char* tag : {"deb-vm", "again", "forced"})  // the qcow2 blob goes: pulled again
    ASSERT_EQ(d.cli({"image", "rm", tag}).exit_code, 0) << tag;
  ASSERT_EQ(d.cli({"image", "prune"}).exit_code, 0);
  Json pulled = json({"image", "pull", url + "/vms/deb:1", "--tag", "pulled:1"});
  EXPECT_EQ(pulled.value("digest", ""), q.value("digest", "")) << pulled.dump();
  EXPECT_EQ(pulled.value("type", ""), "vm");
  EXPECT_EQ(pulled["disk"].value("format", ""), "qcow2");

  // Never a container's root file system.
  expect_refused({"ct", "run", "--net", "none", "pulled:1", "true"},
                 "pulled:1 is a VM disk image; use vireo vm create --image");
  EXPECT_EQ(json({"ct", "ls"}).size(), 0u);

  // Removed and pruned: the disks' bytes come back.
  for (const char* tag : {"deb-raw", "pulled:1"})
    ASSERT_EQ(d.cli({"image", "rm", tag}).exit_code, 0) << tag;
  Json pruned = json({"image", "prune"});
  EXPECT_GE(pruned.value("bytes_freed", 0ull), fs::file_size(raw) + fs::file_size(qcow2))
      << pruned.dump();
  EXPECT_EQ(json({"image", "ls"}).size(), 0u);
  EXPECT_EQ(blob_count(), 0u);
}

TEST_F(VmImageTest, CorruptDisksAreRefusedAndNothingIsStored) {
  ASSERT_EQ(d.cli({"image", "import", raw, "--tag", "deb-raw"}).exit_code, 0);
  const size_t blobs = blob_count();
  struct Case {
    const char* name;
    off_t offset;
    std::string bytes;
  };
  for (const auto& c : std::vector<Case>{{"version", 4, std::string("\0\0\0\x09", 4)},
                                         {"size", 24, std::string(8, '\xff')},
                                         {"cluster-bits", 20, std::string("\0\0\0\x02", 4)}}) {
    const std::string bad = (d.dir() / (std::string(c.name) + ".qcow2")).string();
    fs::copy_file(qcow2, bad, fs::copy_options::overwrite_existing);
    {
      std::fstream f(bad, std::ios::binary | std::ios::in | std::ios::out);
      f.seekp(c.offset);
      f.write(c.bytes.data(), static_cast<std::streamsize>(c.bytes.size()));
    }
    expect_refused({"image", "import", bad, "--tag", "bad"}, "not a valid qcow2 image");
  }
  // Forced types are checked too: a file of zeros is no qcow2.
  const std::string zeros = (d.dir() / "zeros.img").string();
  std::ofstream(zeros, std::ios::binary) << std::string(65536, '\0');
  expect_refused({"image", "import", zeros, "--type", "qcow2", "--tag", "bad"},
                 "not a valid qcow2 image");
  EXPECT_EQ(json({"image", "ls"}).size(), 1u);
  EXPECT_EQ(blob_count(), blobs);
}

// The guest's boot disk, raw and as qcow2 (grown by --disk-size), each made the root volume of
// a VM that boots it through SeaBIOS (no kernel given).
TEST_F(VmImageTest, VmsCreatedFromRawAndQcow2ImagesBoot) {
  ASSERT_EQ(d.cli({"image", "import", raw, "--tag", "deb-raw"}).exit_code, 0);
  ASSERT_EQ(d.cli({"image", "import", qcow2, "--tag", "deb-vm"}).exit_code, 0);
  StopAtEnd stop_r{d, "r1"}, stop_q{d, "q1"};
  auto r1 = d.cli({"vm", "create", "r1", "--image", "deb-raw", "--memory", "256M", "--start"});
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  auto q1 = d.cli({"vm", "create", "q1", "--image", "deb-vm", "--disk-size", "64M", "--memory",
                   "256M", "--start"});
  ASSERT_EQ(q1.exit_code, 0) << q1.err;

  for (const char* vm : {"r1", "q1"}) {
    Json shown = json({"vm", "show", vm});
    ASSERT_EQ(shown.value("disks", Json::array()).size(), 1u) << shown.dump();
    EXPECT_EQ(shown["disks"][0].value("volume", ""), std::string("default/") + vm + "-root");
    EXPECT_EQ(shown.value("kernel", "x"), "");
    EXPECT_EQ(shown.value("status", ""), "ready");
  }
  EXPECT_EQ(json({"vol", "show", "default/r1-root"}).value("size", 0ull), fs::file_size(raw));
  EXPECT_EQ(json({"vol", "show", "default/q1-root"}).value("size", 0ull), 64ull << 20);
  EXPECT_TRUE(booted(d, "r1", 1)) << console_log(d, "r1");
  EXPECT_TRUE(booted(d, "q1", 1)) << console_log(d, "q1");

  EXPECT_EQ(d.cli({"vm", "stop", "r1", "--force"}).exit_code, 0);
  EXPECT_EQ(d.cli({"vm", "stop", "q1", "--force"}).exit_code, 0);
  // The image is untouched by what the guests wrote; the volumes go with --volumes.
  EXPECT_EQ(d.cli({"vm", "rm", "r1", "--volumes"}).exit_code, 0);
  EXPECT_EQ(d.cli({"vm", "rm", "q1", "--volumes"}).exit_code, 0);
  EXPECT_FALSE(volume_exists("r1-root"));
  EXPECT_FALSE(volume_exists("q1-root"));
  EXPECT_EQ(json({"image", "ls"}).size(), 2u);
}

TEST_F(VmImageTest, BadImagesForAVmAreRefusedAndLeaveNothing) {
  ASSERT_EQ(d.cli({"image", "import", raw, "--tag", "deb-raw"}).exit_code, 0);
  ASSERT_EQ(import_busybox(d, {"true"}), "");
  expect_refused({"vm", "create", "c1", "--image", "busybox:1"},
                 "image busybox:1 is a container image, not a VM disk image");
  expect_refused({"vm", "create", "c2", "--image", "nope:1"}, "image nope:1 not found");
  expect_refused({"vm", "create", "c3", "--image", "deb-raw", "--disk-size", "1M"},
                 "smaller than image deb-raw's disk");
  expect_refused({"vm", "create", "c4", "--image", "deb-raw", "--pool", "nopool"},
                 "pool nopool not found");
  expect_refused({"vm", "create", "c5", "--image", "deb-raw", "--memory", "1K"}, "memory");
  expect_refused({"vm", "create", "c6", "--disk-size", "1G", "--kernel", guest().kernel},
                 "--pool and --disk-size need --image");
  // A volume of that name is never overwritten, nor removed by the refusal.
  ASSERT_EQ(d.cli({"vol", "create", "default/c7-root", "--size", "1M"}).exit_code, 0);
  expect_refused({"vm", "create", "c7", "--image", "deb-raw"}, "default/c7-root already exists");
  EXPECT_TRUE(volume_exists("c7-root"));
  // Refused after the disk was copied (the NIC's network is checked then): the volume goes too.
  expect_refused({"vm", "create", "c8", "--image", "deb-raw", "--nic", "nonet"}, "nonet");
  EXPECT_FALSE(volume_exists("c8-root"));
  for (const char* vm : {"c1", "c2", "c3", "c4", "c5", "c6"})
    EXPECT_FALSE(volume_exists(std::string(vm) + "-root")) << vm;
  EXPECT_EQ(vms().size(), 0u) << vms().dump();
  // The name is free again.
  auto ok = d.cli({"vm", "create", "c8", "--image", "deb-raw"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  // A taken name: refused before its volume is looked at, and the VM keeps its volume.
  expect_refused({"vm", "create", "c8", "--image", "deb-raw"}, "vm 'c8' already exists");
  EXPECT_TRUE(volume_exists("c8-root"));
  EXPECT_EQ(d.cli({"vm", "rm", "c8", "--volumes"}).exit_code, 0);
  EXPECT_FALSE(volume_exists("c8-root"));
}

}  // namespace
}  // namespace vireo::testing
