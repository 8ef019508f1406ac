// VM snapshots through vireod and the CLI, with the real guest under QEMU: the guest's shell on
// the serial console writes markers to its disks, a snapshot of the running VM is taken, the
// disks change, the restore brings the snapshot's markers back (thin-pool volume, dir-pool
// volume, image file); with --memory the guest's shell continues where it was, without a reboot.
// And the requests that must be refused, leaving nothing behind.
#include <gtest/gtest.h>

#include <thread>

#include "base/file.h"
#include "base/json.h"
#include "cli_expect.h"
#include "daemon_process.h"
#include "guest.h"
#include "guest_shell.h"
#include "pty_cli.h"

namespace vireo::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::vector<std::string> volume_names(const DaemonProcess& d, const std::string& pool) {
  std::vector<std::string> out;
  for (const auto& v : cli_json(d, {"vol", "ls", pool})) out.push_back(v.value("name", ""));
  return out;
}

// A thin-pool volume disk of a running VM: snapshot, overwrite, stop, restore, start: the
// snapshot's marker is back and the pool's metadata checks clean; vm rm takes the snapshot's
// volume with it.
TEST(VmSnapshotTest, DiskSnapshotOfRunningVmOnThinVolumeRestores) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  const std::string file = (d.dir() / "thin.pool").string();
  ASSERT_EQ(
      d.cli({"pool", "create", "tp", "--type", "thin", "--path", file, "--size", "256M"}).exit_code,
      0);
  ASSERT_EQ(d.cli({"vol", "create", "tp/d1", "--size", "16M"}).exit_code, 0);
  auto created =
      d.cli({"vm", "create", "s1", "--kernel", guest().kernel, "--initrd", guest().initrd,
             "--cmdline", "console=ttyS0 quiet", "--disk", "tp/d1", "--start"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  StopAtEnd stop_at_end{d, "s1"};
  ASSERT_TRUE(booted(d, "s1", 1));
  {
    GuestShell sh(d, "s1");
    ASSERT_TRUE(sh.ready()) << sh.output();
    ASSERT_TRUE(sh.run(write_marker("/dev/vda", "marker-one"))) << sh.output();
    auto snap = d.cli({"vm", "snapshot", "create", "s1", "snap1"});
    ASSERT_EQ(snap.exit_code, 0) << snap.err;
    EXPECT_NE(snap.out.find("guest paused:"), std::string::npos) << snap.out;
    // The guest runs on after the snapshot.
    EXPECT_EQ(status_of(d, "s1"), "running");
    ASSERT_TRUE(sh.run(write_marker("/dev/vda", "marker-two"))) << sh.output();
    ASSERT_TRUE(sh.shows("/dev/vda", "marker-two")) << sh.output();
  }
  Json list = cli_json(d, {"vm", "snapshot", "ls", "s1"});
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0].value("name", ""), "snap1");
  EXPECT_EQ(list[0].value("status", ""), "running");
  EXPECT_FALSE(list[0].value("memory", true));
  EXPECT_LT(list[0].value("pause_ms", 99999), 5000) << list.dump();
  ASSERT_EQ(list[0].value("disks", Json::array()).size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["disks"][0].value("snapshot", ""), "tp/d1.vmsnap.snap1");
  std::printf("thin-pool volume snapshot: guest paused %d ms\n", list[0].value("pause_ms", -1));

  ASSERT_EQ(d.cli({"vm", "stop", "s1", "--force"}).exit_code, 0);
  auto restored = d.cli({"vm", "snapshot", "restore", "s1", "snap1"});
  ASSERT_EQ(restored.exit_code, 0) << restored.err;
  ASSERT_EQ(d.cli({"vm", "start", "s1"}).exit_code, 0);
  ASSERT_TRUE(booted(d, "s1", 2));
  {
    GuestShell sh(d, "s1");
    ASSERT_TRUE(sh.ready()) << sh.output();
    EXPECT_TRUE(sh.shows("/dev/vda", "marker-one")) << sh.output();
  }
  auto check = d.cli({"pool", "check", "tp"});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;

  ASSERT_EQ(d.cli({"vm", "stop", "s1", "--force"}).exit_code, 0);
  EXPECT_EQ(volume_names(d, "tp"), (std::vector<std::string>{"d1", "d1.vmsnap.snap1"}));
  expect_refused(d, {"vol", "rm", "tp/d1.vmsnap.snap1"}, "VM snapshot s1/snap1");
  ASSERT_EQ(d.cli({"vm", "rm", "s1"}).exit_code, 0);
  EXPECT_EQ(volume_names(d, "tp"), (std::vector<std::string>{"d1"}));
  EXPECT_EQ(d.cli({"pool", "check", "tp"}).exit_code, 0);
}

// A dir-pool volume and an image file on one running VM: restoring while it runs stops it (the
// libvirt way); both disks come back as they were; snapshot rm removes the snapshot's volume.
TEST(VmSnapshotTest, DirVolumeAndImageFileRestoreWhileRunning) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  ASSERT_EQ(d.cli({"vol", "create", "default/d2", "--size", "16M"}).exit_code, 0);
  const fs::path image = d.dir() / "disk.img";
  ASSERT_TRUE(run_process({"truncate", "-s", "16M", image.string()}).value().ok());
  auto created = d.cli({"vm", "create", "s2", "--kernel", guest().kernel, "--initrd",
                        guest().initrd, "--cmdline", "console=ttyS0 quiet", "--disk", "default/d2",
                        "--disk", image.string(), "--start"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  StopAtEnd stop_at_end{d, "s2"};
  ASSERT_TRUE(booted(d, "s2", 1));
  {
    GuestShell sh(d, "s2");
    ASSERT_TRUE(sh.ready()) << sh.output();
    ASSERT_TRUE(sh.run(write_marker("/dev/vda", "vol-one"))) << sh.output();
    ASSERT_TRUE(sh.run(write_marker("/dev/vdb", "file-one"))) << sh.output();
    auto snap = d.cli({"vm", "snapshot", "create", "s2", "a"});
    ASSERT_EQ(snap.exit_code, 0) << snap.err;
    ASSERT_TRUE(sh.run(write_marker("/dev/vda", "vol-two"))) << sh.output();
    ASSERT_TRUE(sh.run(write_marker("/dev/vdb", "file-two"))) << sh.output();
  }
  Json list = cli_json(d, {"vm", "snapshot", "ls", "s2"});
  ASSERT_EQ(list.size(), 1u);
  std::printf("dir-pool volume + image file snapshot: guest paused %d ms\n",
              list[0].value("pause_ms", -1));
  auto restored = d.cli({"vm", "snapshot", "restore", "s2", "a"});
  ASSERT_EQ(restored.exit_code, 0) << restored.err;
  EXPECT_EQ(status_of(d, "s2"), "stopped");
  ASSERT_EQ(d.cli({"vm", "start", "s2"}).exit_code, 0);
  ASSERT_TRUE(booted(d, "s2", 2));
  {
    GuestShell sh(d, "s2");
    ASSERT_TRUE(sh.ready()) << sh.output();
    EXPECT_TRUE(sh.shows("/dev/vda", "vol-one")) << sh.output();
    EXPECT_TRUE(sh.shows("/dev/vdb", "file-one")) << sh.output();
  }
  ASSERT_EQ(d.cli({"vm", "stop", "s2", "--force"}).exit_code, 0);
  EXPECT_EQ(d.cli({"pool", "check", "default"}).exit_code, 0);
  ASSERT_EQ(d.cli({"vm", "snapshot", "rm", "s2", "a"}).exit_code, 0);
  EXPECT_TRUE(cli_json(d, {"vm", "snapshot", "ls", "s2"}).empty());
  EXPECT_EQ(volume_names(d, "default"), (std::vector<std::string>{"d2"}));
  EXPECT_FALSE(fs::exists(d.root() / "vms" / "s2" / "snapshots" / "a"));
  ASSERT_EQ(d.cli({"vm", "rm", "s2"}).exit_code, 0);
}

// A snapshot with memory state: the shell's variable set before it is back after the restore,
// in the same shell (no second boot), and the disk matches the memory.
TEST(VmSnapshotTest, MemorySnapshotResumesTheGuestWhereItWas) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  ASSERT_EQ(d.cli({"vol", "create", "default/m1", "--size", "16M"}).exit_code, 0);
  auto created =
      d.cli({"vm", "create", "m1", "--kernel", guest().kernel, "--initrd", guest().initrd,
             "--cmdline", "console=ttyS0 quiet", "--disk", "default/m1", "--start"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  StopAtEnd stop_at_end{d, "m1"};
  ASSERT_TRUE(booted(d, "m1", 1));
  {
    GuestShell sh(d, "m1");
    ASSERT_TRUE(sh.ready()) << sh.output();
    ASSERT_TRUE(sh.run("X=before-$((40+2))")) << sh.output();
    ASSERT_TRUE(sh.run(write_marker("/dev/vda", "mem-one"))) << sh.output();
    auto snap = d.cli({"vm", "snapshot", "create", "m1", "live", "--memory"});
    ASSERT_EQ(snap.exit_code, 0) << snap.err;
    EXPECT_EQ(status_of(d, "m1"), "running");
    ASSERT_TRUE(sh.run("X=after")) << sh.output();
    ASSERT_TRUE(sh.run(write_marker("/dev/vda", "mem-two"))) << sh.output();
  }
  Json list = cli_json(d, {"vm", "snapshot", "ls", "m1"});
  ASSERT_EQ(list.size(), 1u);
  EXPECT_TRUE(list[0].value("memory", false)) << list.dump();
  EXPECT_GT(list[0].value("memory_bytes", 0ull), 1ull << 20) << list.dump();
  std::printf("memory snapshot: guest paused %d ms, state %llu bytes\n",
              list[0].value("pause_ms", -1),
              static_cast<unsigned long long>(list[0].value("memory_bytes", 0ull)));
  const auto t0 = std::chrono::steady_clock::now();
  auto restored = d.cli({"vm", "snapshot", "restore", "m1", "live"});
  ASSERT_EQ(restored.exit_code, 0) << restored.err;
  std::printf("memory restore: %lld ms\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - t0)
                                         .count()));
  EXPECT_EQ(status_of(d, "m1"), "running");
  {
    GuestShell sh(d, "m1");
    ASSERT_TRUE(sh.attached()) << sh.output();
    EXPECT_TRUE(sh.echoes("$X", "before-42")) << sh.output();
    EXPECT_TRUE(sh.shows("/dev/vda", "mem-one")) << sh.output();
  }
  EXPECT_EQ(occurrences(console_log(d, "m1"), "VIREO-GUEST-READY"), 1u) << "the guest booted again";
  // The definition changed: the saved state no longer fits.
  ASSERT_EQ(d.cli({"vm", "stop", "m1", "--force"}).exit_code, 0);
  ASSERT_EQ(d.cli({"vol", "create", "default/m2", "--size", "8M"}).exit_code, 0);
  ASSERT_EQ(d.cli({"vm", "disk", "add", "m1", "default/m2"}).exit_code, 0);
  expect_refused(d, {"vm", "snapshot", "restore", "m1", "live"}, "was changed since");
  ASSERT_EQ(d.cli({"vm", "rm", "m1"}).exit_code, 0);
  EXPECT_EQ(volume_names(d, "default"), (std::vector<std::string>{"m1", "m2"}));
}

// Refused with one line each, and nothing left behind.
TEST(VmSnapshotTest, BadRequestsAreRefusedAndLeaveNothing) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  ASSERT_EQ(d.cli({"vol", "create", "default/d3", "--size", "8M"}).exit_code, 0);
  ASSERT_EQ(
      d.cli({"vm", "create", "b1", "--kernel", guest().kernel, "--disk", "default/d3"}).exit_code,
      0);
  expect_refused(d, {"vm", "snapshot", "create", "nope", "s"}, "nope");
  expect_refused(d, {"vm", "snapshot", "ls", "nope"}, "nope");
  expect_refused(d, {"vm", "snapshot", "create", "b1", "bad name!"}, "invalid snapshot name");
  expect_refused(d, {"vm", "snapshot", "create", "b1", std::string(60, 'x')}, "63-character limit");
  expect_refused(d, {"vm", "snapshot", "create", "b1", "m", "--memory"}, "not running");
  ASSERT_EQ(d.cli({"vm", "snapshot", "create", "b1", "s1"}).exit_code, 0);
  expect_refused(d, {"vm", "snapshot", "create", "b1", "s1"}, "has a snapshot 's1'");
  expect_refused(d, {"vm", "snapshot", "restore", "b1", "zz"}, "no snapshot 'zz'");
  expect_refused(d, {"vm", "snapshot", "rm", "b1", "zz"}, "no snapshot 'zz'");
  expect_refused(d, {"vm", "snapshot", "restore", "nope", "s1"}, "nope");
  // A user volume in the way of the snapshot's volume.
  ASSERT_EQ(d.cli({"vol", "create", "default/d3.vmsnap.s2", "--size", "8M"}).exit_code, 0);
  expect_refused(d, {"vm", "snapshot", "create", "b1", "s2"}, "d3.vmsnap.s2 exists");
  ASSERT_EQ(d.cli({"vol", "rm", "default/d3.vmsnap.s2"}).exit_code, 0);
  Json list = cli_json(d, {"vm", "snapshot", "ls", "b1"});
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0].value("status", ""), "stopped");
  EXPECT_EQ(volume_names(d, "default"), (std::vector<std::string>{"d3", "d3.vmsnap.s1"}));
  // vol rm refuses the snapshot's volume; removed behind vireod's back (straight through
  // vireo-storaged's control socket), the restore says so and changes nothing.
  expect_refused(d, {"vol", "rm", "default/d3.vmsnap.s1"}, "VM snapshot b1/s1");
  auto removed = run_process(
      {"python3", "-c",
       "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
       "s.sendall(b'{\"op\":\"vol.rm\",\"pool\":\"default\",\"name\":\"d3.vmsnap.s1\"}\\n'); "
       "r=s.makefile().readline(); print(r); sys.exit(0 if '\"ok\":true' in r.replace(' ','') else "
       "1)",
       (d.root() / "storage" / "control.sock").string()},
      {.timeout = 30s});
  ASSERT_TRUE(removed && removed->ok()) << (removed ? removed->out + removed->err : "");
  expect_refused(d, {"vm", "snapshot", "restore", "b1", "s1"}, "d3.vmsnap.s1");
  ASSERT_EQ(d.cli({"vm", "snapshot", "rm", "b1", "s1"}).exit_code, 0);
  EXPECT_TRUE(cli_json(d, {"vm", "snapshot", "ls", "b1"}).empty());
  EXPECT_EQ(volume_names(d, "default"), (std::vector<std::string>{"d3"}));
  EXPECT_FALSE(fs::exists(d.root() / "vms" / "b1" / "snapshots" / "s1"));
}

}  // namespace
}  // namespace vireo::testing
