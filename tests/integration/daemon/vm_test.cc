// VMs through vireod and the CLI, with the real guest under QEMU: define, start, console, pause,
// resume, a daemon kill -9 and restart that the VM survives (and re-attach), ACPI stop, delete;
// and definitions the daemon must refuse.
#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <regex>
#include <thread>

#include "base/file.h"
#include "base/json.h"
#include "base/strings.h"
#include "cli_expect.h"
#include "daemon_process.h"
#include "guest.h"
#include "guest_shell.h"
#include "netd_fixture.h"
#include "pty_cli.h"
#include "raw_http.h"
#include "tls_fixture.h"

namespace vireo::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

Json vm_json(const DaemonProcess& d, const std::string& name) {
  auto r = d.cli({"--format", "json", "vm", "show", name});
  return r.exit_code == 0 ? parse_json(r.out).value_or(Json()) : Json();
}

// A zombie (exited, not yet reaped by init after the daemon that started it died) is not alive.
bool alive(int pid) {
  auto stat = read_file(fmt::format("/proc/{}/stat", pid));
  if (!stat) return false;
  auto paren = stat->rfind(')');
  return paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] != 'Z';
}

// The console log has no event to wait on; poll it, bounded.
bool console_shows(const DaemonProcess& d, const std::string& name, const std::string& text) {
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (d.cli({"vm", "console", name, "--log"}).out.find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(200ms);
  }
  return false;
}

// The test guest started as vm with a new 16 MiB volume as its disk.
::testing::AssertionResult start_on_new_volume(const DaemonProcess& d, const std::string& vm,
                                               const std::string& volume) {
  if (auto v = d.cli({"vol", "create", volume, "--size", "16M"}); v.exit_code != 0)
    return ::testing::AssertionFailure() << v.err;
  auto r = d.cli({"vm", "create", vm, "--kernel", guest().kernel, "--initrd", guest().initrd,
                  "--cmdline", "console=ttyS0 quiet", "--disk", volume, "--start"});
  if (r.exit_code != 0) return ::testing::AssertionFailure() << r.err;
  return ::testing::AssertionSuccess();
}

TEST(VmDaemonTest, LifecycleSurvivesADaemonKillAndEndsWithAcpiStop) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  auto created =
      d.cli({"vm", "create", "g1", "--kernel", guest().kernel, "--initrd", guest().initrd,
             "--cmdline", "console=ttyS0 quiet", "--memory", "256M", "--start"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_EQ(status_of(d, "g1"), "running");
  ASSERT_TRUE(console_shows(d, "g1", "VIREO-GUEST-READY"));
  int pid = vm_json(d, "g1")["state"].value("pid", 0);
  ASSERT_GT(pid, 0);

  EXPECT_EQ(d.cli({"vm", "pause", "g1"}).exit_code, 0);
  EXPECT_EQ(status_of(d, "g1"), "paused");
  EXPECT_EQ(d.cli({"vm", "resume", "g1"}).exit_code, 0);
  EXPECT_EQ(status_of(d, "g1"), "running");

  auto refused = d.cli({"vm", "rm", "g1"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("VM 'g1' is running: stop it first"), std::string::npos)
      << refused.err;

  // The VM outlives the daemon (and holds none of its sockets: the new daemon can listen).
  d.kill();
  EXPECT_TRUE(alive(pid));
  ASSERT_TRUE(d.start());
  EXPECT_EQ(status_of(d, "g1"), "running");
  EXPECT_EQ(vm_json(d, "g1")["state"].value("pid", 0), pid);

  auto stopped = d.cli({"vm", "stop", "g1", "--timeout", "60"});
  EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
  Json vm = vm_json(d, "g1");
  EXPECT_EQ(vm["state"].value("status", ""), "stopped");
  EXPECT_NE(vm["state"].value("last_exit", "").find("guest-shutdown"), std::string::npos)
      << vm.dump();
  EXPECT_FALSE(alive(pid));

  EXPECT_EQ(d.cli({"vm", "rm", "g1"}).exit_code, 0);
  EXPECT_FALSE(fs::exists(d.root() / "vms" / "g1"));
  EXPECT_EQ(d.cli({"vm", "show", "g1"}).exit_code, 1);
}

// Runs a command, for the test's own namespace and veth set-up.
bool sh(const std::vector<std::string>& argv) {
  auto r = run_process(argv, {.timeout = 20s});
  return r && r->ok();
}

// The VM's NIC is a TAP on the default network: the guest gets a DHCP lease from vireo-netd,
// pings a container on the same network (a veth, vireod's IPAM) and the container pings it back;
// a namespace attached with `net port add` reaches it too.
TEST(VmDaemonTest, NicOnAVireoNetworkGetsDhcpAndPingsAContainer) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  const std::string ns = fmt::format("vtvm{}", ::getpid()), veth = fmt::format("vtv{}", ::getpid());
  struct Cleanup {
    std::string ns, veth;
    ~Cleanup() {
      (void)run_process({"ip", "link", "del", veth});
      (void)run_process({"ip", "netns", "del", ns});
    }
  } cleanup{ns, veth};
  ASSERT_TRUE(sh({"ip", "netns", "add", ns}));
  ASSERT_TRUE(sh({"ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "c"}));
  ASSERT_TRUE(sh({"ip", "link", "set", veth + "c", "netns", ns}));
  ASSERT_TRUE(sh({"ip", "link", "set", veth, "up"}));
  ASSERT_TRUE(sh({"ip", "-n", ns, "addr", "add", "10.99.0.250/24", "dev", veth + "c"}));
  ASSERT_TRUE(sh({"ip", "-n", ns, "link", "set", veth + "c", "up"}));
  ASSERT_EQ(d.cli({"net", "port", "add", "vireo0", "--iface", veth}).exit_code, 0);

  auto created =
      d.cli({"vm", "create", "n1", "--kernel", guest().kernel, "--initrd", guest().initrd,
             "--cmdline", "console=ttyS0 quiet", "--nic", "vireo0", "--start"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  ASSERT_TRUE(console_shows(d, "n1", "VIREO-GUEST-READY"));
  std::string log = d.cli({"vm", "console", "n1", "--log"}).out;
  auto at = log.find("vireo-guest: eth0 10.99.0.");
  ASSERT_NE(at, std::string::npos) << log;
  std::string ip = log.substr(at + 18, log.find('/', at) - at - 18);
  EXPECT_TRUE(sh({"ip", "netns", "exec", ns, "ping", "-c", "2", "-W", "5", ip})) << ip;
  ASSERT_EQ(import_busybox(d, {"sh", "sleep", "ping"}), "");
  auto peer = d.cli({"ct", "run", "-d", "--name", "peer", "busybox:1", "sleep", "1000"});
  ASSERT_EQ(peer.exit_code, 0) << peer.err;
  const std::string container_ip =
      cli_json(d, {"ct", "inspect", "peer"}).value("network", Json::object()).value("ip", "");
  ASSERT_TRUE(container_ip.starts_with("10.99.0.")) << container_ip;
  {
    GuestShell guest_sh(d, "n1");
    ASSERT_TRUE(guest_sh.ready()) << guest_sh.output();
    EXPECT_TRUE(guest_sh.run("ping -c 2 -W 5 " + container_ip + " && echo pinged-$((6*7))"));
    EXPECT_NE(guest_sh.output().find("pinged-42"), std::string::npos) << guest_sh.output();
  }
  auto back = d.cli({"ct", "exec", "peer", "ping", "-c", "1", "-W", "5", ip});
  EXPECT_EQ(back.exit_code, 0) << back.out << back.err;
  EXPECT_EQ(d.cli({"ct", "rm", "-f", "peer"}).exit_code, 0);
  // The NIC's counters (guest's view) saw the DHCP exchange and the pings.
  Json nics = cli_json(d, {"vm", "stats", "n1"}).value("nics", Json::array());
  ASSERT_EQ(nics.size(), 1u);
  EXPECT_EQ(nics[0].value("network", ""), "vireo0");
  EXPECT_GE(nics[0].value("rx_packets", 0ull), 3ull) << nics.dump();
  EXPECT_GE(nics[0].value("tx_packets", 0ull), 3ull) << nics.dump();

  // Stopping the VM unplugs its NIC: the network keeps only the namespace's port.
  ASSERT_EQ(d.cli({"vm", "stop", "n1", "--force"}).exit_code, 0);
  Json net = parse_json(d.cli({"--format", "json", "net", "show", "vireo0"}).out).value_or(Json());
  EXPECT_EQ(net.value("ports", Json()), Json::array({veth})) << net.dump();
  EXPECT_EQ(d.cli({"vm", "rm", "n1"}).exit_code, 0);
  EXPECT_EQ(d.cli({"net", "port", "rm", "vireo0", "--iface", veth}).exit_code, 0);
}

// A disk from a storage pool reaches the guest through vireo-storaged's NBD export.
TEST(VmDaemonTest, VolumeFromAPoolIsTheGuestsDisk) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  auto vol = d.cli({"vol", "create", "default/d1", "--size", "64M"});
  ASSERT_EQ(vol.exit_code, 0) << vol.err;
  auto created =
      d.cli({"vm", "create", "v1", "--kernel", guest().kernel, "--initrd", guest().initrd,
             "--cmdline", "console=ttyS0 quiet", "--disk", "default/d1", "--start"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  ASSERT_TRUE(console_shows(d, "v1", "VIREO-GUEST-READY"));
  EXPECT_NE(d.cli({"vm", "console", "v1", "--log"}).out.find("vireo-guest: disk vda"),
            std::string::npos);
  // Statistics: QEMU's CPU time, one vCPU, the disk the guest read, the guest's memory figures
  // from its balloon driver; the balloon gives memory back to the host.
  Json stats = cli_json(d, {"vm", "stats", "v1"});
  EXPECT_GT(stats.value("cpu_ns", 0ull), 0ull) << stats.dump();
  EXPECT_EQ(stats.value("vcpu_ns", Json::array()).size(), 1u) << stats.dump();
  ASSERT_FALSE(stats.value("disks", Json::array()).empty()) << stats.dump();
  EXPECT_EQ(stats["disks"][0].value("id", ""), "disk0");
  EXPECT_GT(stats["disks"][0].value("read_bytes", 0ull), 0ull) << stats.dump();
  EXPECT_EQ(stats["memory"].value("configured", 0ull), 256ull << 20);
  EXPECT_GT(stats["memory"].value("rss", 0ull), 0ull);
  ASSERT_EQ(d.cli({"vm", "balloon", "v1", "160M"}).exit_code, 0);
  auto balloon_is = [&](uint64_t bytes) {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline) {
      stats = cli_json(d, {"vm", "stats", "v1"});
      if (stats["memory"].value("balloon", 0ull) == bytes &&
          stats["memory"].value("guest", Json::object()).contains("total"))
        return true;
      std::this_thread::sleep_for(500ms);  // the guest inflates at its own pace
    }
    return false;
  };
  EXPECT_TRUE(balloon_is(160ull << 20)) << stats.dump();
  expect_refused(d, {"vm", "balloon", "v1", "1G"}, "out of range");
  expect_refused(d, {"vm", "balloon", "v1", "lots"});
  // The guest's disk is not also a container's file system, nor another VM's running disk.
  ASSERT_EQ(import_busybox(d, {"true"}), "");
  expect_refused(d, {"ct", "run", "--net", "none", "-v", "default/d1:/x", "busybox:1", "true"},
                 "VM v1");
  ASSERT_EQ(d.cli({"vm", "create", "v3", "--kernel", guest().kernel, "--initrd", guest().initrd,
                   "--disk", "default/d1"})
                .exit_code,
            0);
  expect_refused(d, {"vm", "start", "v3"}, "VM v1");
  EXPECT_EQ(d.cli({"vm", "rm", "v3"}).exit_code, 0);
  EXPECT_EQ(d.cli({"vm", "stop", "v1", "--force"}).exit_code, 0);
  expect_refused(d, {"vm", "stats", "v1"}, "not running");
  auto in_use = d.cli({"vol", "rm", "default/d1"});
  EXPECT_EQ(in_use.exit_code, 1);
  EXPECT_NE(in_use.err.find("VM v1"), std::string::npos) << in_use.err;
  EXPECT_EQ(d.cli({"vm", "rm", "v1"}).exit_code, 0);
  EXPECT_EQ(d.cli({"vol", "rm", "default/d1"}).exit_code, 0);
  auto missing =
      d.cli({"vm", "create", "v2", "--kernel", guest().kernel, "--disk", "default/nope"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("nope"), std::string::npos) << missing.err;
}

// Hot-plug into a running q35 VM: a volume disk the guest kernel finds, a NIC on a Vireo network,
// and both unplugged again with the guest's consent (PCIe attention button); the definition
// follows every change.
TEST(VmDaemonTest, DisksAndNicsHotPlugAndUnplug) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  ASSERT_EQ(d.cli({"vol", "create", "default/h1", "--size", "16M"}).exit_code, 0);
  auto created = d.cli({"vm", "create", "hp", "--kernel", guest().kernel, "--initrd",
                        guest().initrd, "--cmdline", "console=ttyS0", "--start"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  ASSERT_TRUE(console_shows(d, "hp", "VIREO-GUEST-READY"));

  auto r = d.cli({"vm", "disk", "add", "hp", "default/h1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("disk0"), std::string::npos) << r.out;
  EXPECT_TRUE(console_shows(d, "hp", "[vda] 32768 512-byte logical blocks"));
  r = d.cli({"vm", "nic", "add", "hp", "vireo0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json vm = vm_json(d, "hp");
  ASSERT_EQ(vm.value("disks", Json::array()).size(), 1u) << vm.dump();
  ASSERT_EQ(vm.value("nics", Json::array()).size(), 1u) << vm.dump();
  const std::string mac = vm["nics"][0].value("mac", "");
  EXPECT_TRUE(mac.starts_with("52:54:00:")) << vm.dump();
  Json ports = cli_json(d, {"net", "show", "vireo0"}).value("ports", Json::array());
  EXPECT_EQ(ports.size(), 1u) << ports.dump();
  Json stats = cli_json(d, {"vm", "stats", "hp"});
  EXPECT_EQ(stats["nics"][0].value("id", ""), "nic0") << stats.dump();

  // A used volume cannot go; the guest lets the disk go, then it can.
  expect_refused(d, {"vol", "rm", "default/h1"}, "VM hp");
  r = d.cli({"vm", "disk", "rm", "hp", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = d.cli({"vm", "nic", "rm", "hp", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  vm = vm_json(d, "hp");
  EXPECT_TRUE(vm.value("disks", Json::array()).empty()) << vm.dump();
  EXPECT_TRUE(vm.value("nics", Json::array()).empty()) << vm.dump();
  EXPECT_TRUE(cli_json(d, {"net", "show", "vireo0"}).value("ports", Json::array()).empty());
  EXPECT_EQ(d.cli({"vol", "rm", "default/h1"}).exit_code, 0);

  // Refused with one line, the definition unchanged.
  expect_refused(d, {"vm", "disk", "add", "hp", "/nonexistent.img"}, "nonexistent");
  expect_refused(d, {"vm", "disk", "rm", "hp", "3"}, "no disk 3");
  expect_refused(d, {"vm", "nic", "add", "hp", "nosuchnet"}, "nosuchnet");
  EXPECT_TRUE(vm_json(d, "hp").value("disks", Json::array()).empty());
  EXPECT_EQ(d.cli({"vm", "stop", "hp", "--force"}).exit_code, 0);
  EXPECT_EQ(d.cli({"vm", "rm", "hp"}).exit_code, 0);
}

// The serial console over the API's WebSocket, as a user at a terminal: two viewers see the
// backlog and what the guest's shell answers to one of them, Ctrl-] detaches one and leaves the
// VM running, and stopping the VM ends the other's console.
TEST(VmDaemonTest, ConsoleIsInteractiveForSeveralViewers) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  auto created = d.cli({"vm", "create", "c1", "--kernel", guest().kernel, "--initrd",
                        guest().initrd, "--cmdline", "console=ttyS0 quiet", "--start"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  ASSERT_TRUE(console_shows(d, "c1", "VIREO-GUEST-READY"));
  PtyCli a(d, {"vm", "console", "c1"});
  PtyCli b(d, {"vm", "console", "c1"});
  ASSERT_TRUE(a.started() && b.started());
  ASSERT_TRUE(a.expect("VIREO-GUEST-READY")) << a.output();
  ASSERT_TRUE(b.expect("VIREO-GUEST-READY")) << b.output();
  a.type("echo hi-$((6*7))\r");
  EXPECT_TRUE(a.expect("hi-42")) << a.output();
  EXPECT_TRUE(b.expect("hi-42")) << b.output();
  a.type("\x1d");  // Ctrl-]
  EXPECT_EQ(a.wait(), 0) << a.output();
  EXPECT_NE(a.output().find("Detached"), std::string::npos) << a.output();
  EXPECT_EQ(status_of(d, "c1"), "running");
  ASSERT_EQ(d.cli({"vm", "stop", "c1", "--force"}).exit_code, 0);
  EXPECT_EQ(b.wait(), 0) << b.output();
  EXPECT_NE(b.output().find("closed"), std::string::npos) << b.output();
  PtyCli c(d, {"vm", "console", "c1"});
  EXPECT_EQ(c.wait(), 1) << c.output();
  EXPECT_NE(c.output().find("not running"), std::string::npos) << c.output();
  EXPECT_EQ(d.cli({"vm", "rm", "c1"}).exit_code, 0);
}

// The CPU model reaches QEMU's command line and each vCPU thread runs only on its host CPU;
// models and pinnings the host cannot have are refused before anything starts.
TEST(VmDaemonTest, CpuModelAndPinning) {
  if (::sysconf(_SC_NPROCESSORS_ONLN) < 2) GTEST_SKIP() << "needs two host CPUs";
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  auto created = d.cli({"vm", "create", "p1", "--kernel", guest().kernel, "--initrd",
                        guest().initrd, "--cmdline", "console=ttyS0 quiet", "--cpus", "2",
                        "--cpu-model", "max", "--cpu-pin", "1,0", "--start"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  ASSERT_TRUE(console_shows(d, "p1", "VIREO-GUEST-READY"));
  const int pid = vm_json(d, "p1")["state"].value("pid", 0);
  ASSERT_GT(pid, 0);
  auto cmdline = read_file(fmt::format("/proc/{}/cmdline", pid)).value_or("");
  EXPECT_NE(cmdline.find(std::string("-cpu\0max\0", 9)), std::string::npos);
  // QEMU names its vCPU threads "CPU N/TCG" (debug-threads=on).
  std::map<std::string, std::string> allowed;
  for (const auto& task : fs::directory_iterator(fmt::format("/proc/{}/task", pid))) {
    std::string comm = read_file(task.path() / "comm").value_or("");
    if (!comm.starts_with("CPU ")) continue;
    std::string status = read_file(task.path() / "status").value_or("");
    auto at = status.find("Cpus_allowed_list:");
    if (at == std::string::npos) continue;
    std::string list = status.substr(at + 18, status.find('\n', at) - at - 18);
    allowed[comm.substr(0, 5)] = std::string(trim(list));
  }
  EXPECT_EQ(allowed["CPU 0"], "1");
  EXPECT_EQ(allowed["CPU 1"], "0");
  EXPECT_EQ(d.cli({"vm", "stop", "p1", "--force"}).exit_code, 0);
  EXPECT_EQ(d.cli({"vm", "rm", "p1"}).exit_code, 0);

  const std::vector<std::string> base = {"vm",           "create", "p2", "--kernel",
                                         guest().kernel, "--cpus", "2"};
  auto refused = [&](std::vector<std::string> extra, const std::string& needle) {
    auto args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    expect_refused(d, args, needle);
  };
  refused({"--cpu-pin", "0"}, "1 host CPUs for 2 vCPUs");
  refused({"--cpu-pin", "0,99"}, "host CPU 99 does not exist");
  refused({"--cpu-model", "max,+vmx"}, "not a CPU model name");
  if (cli_json(d, {"info"})["host"].value("accelerator", "") == "tcg")
    refused({"--cpu-model", "host"}, "needs KVM");
  EXPECT_EQ(d.cli({"vm", "show", "p2"}).exit_code, 1) << "nothing was created";
}

// Live migration between two vireods on this host: the guest moves with its state (its shell
// answers on the target's console, no second boot), the source forgets it; a target that is not
// there, or already has a VM of that name, leaves the guest running on the source.
TEST(VmDaemonTest, LiveMigrationToAnotherVireod) {
  DaemonProcess source, target;
  ASSERT_TRUE(source.start());
  ASSERT_TRUE(target.start());
  auto created = source.cli({"vm", "create", "m1", "--kernel", guest().kernel, "--initrd",
                             guest().initrd, "--cmdline", "console=ttyS0 quiet", "--start"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  ASSERT_TRUE(console_shows(source, "m1", "VIREO-GUEST-READY"));

  expect_refused(source, {"vm", "migrate", "m1", "--to", "/nonexistent/vireod.sock"},
                 "nonexistent");
  ASSERT_EQ(target.cli({"vm", "create", "m1", "--kernel", guest().kernel}).exit_code, 0);
  expect_refused(source, {"vm", "migrate", "m1", "--to", target.socket()}, "exists");
  ASSERT_EQ(target.cli({"vm", "rm", "m1"}).exit_code, 0);
  EXPECT_EQ(status_of(source, "m1"), "running");

  // A slow migration (1 MiB/s) cancelled through its operation: the guest runs on at the
  // source, the target keeps nothing.
  ProcessResult slow;
  std::thread migrating([&] {
    slow = source.cli({"vm", "migrate", "m1", "--to", target.socket(), "--bandwidth", "1"});
  });
  std::string op_id;
  for (auto deadline = std::chrono::steady_clock::now() + 20s;
       op_id.empty() && std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(50ms))  // the operation has no event the CLI can await here
    for (const auto& op : cli_json(source, {"operation", "ls"}))
      if (op.value("description", "") == "migrate VM m1" && op.value("status", "") == "running")
        op_id = op.value("id", "");
  ASSERT_FALSE(op_id.empty());
  EXPECT_EQ(source.cli({"operation", "cancel", op_id}).exit_code, 0);
  migrating.join();
  EXPECT_EQ(slow.exit_code, 1) << slow.out;
  EXPECT_NE(slow.err.find("cancelled"), std::string::npos) << slow.err;
  EXPECT_EQ(status_of(source, "m1"), "running");
  EXPECT_EQ(target.cli({"vm", "show", "m1"}).exit_code, 1) << "nothing left on the target";
  expect_refused(source, {"vm", "migrate", "m1", "--to", target.socket(), "--bandwidth", "70000"},
                 "bandwidth");

  auto moved = source.cli({"--format", "json", "vm", "migrate", "m1", "--to", target.socket()});
  ASSERT_EQ(moved.exit_code, 0) << moved.err;
  Json stats = parse_json(moved.out).value_or(Json());
  std::printf("vireo vm migrate: total %s ms, downtime %s ms\n",
              stats.value("total_ms", Json()).dump().c_str(),
              stats.value("downtime_ms", Json()).dump().c_str());
  EXPECT_LT(stats.value("downtime_ms", 100000ull), 2000ull) << moved.out;
  EXPECT_EQ(status_of(target, "m1"), "running");
  EXPECT_EQ(source.cli({"vm", "show", "m1"}).exit_code, 1) << "the source forgot it";
  PtyCli console(target, {"vm", "console", "m1"});
  ASSERT_TRUE(console.started());
  console.type("echo moved-$((40+2))\r");
  EXPECT_TRUE(console.expect("moved-42")) << console.output();
  console.type("\x1d");
  EXPECT_EQ(console.wait(), 0);
  auto log = target.cli({"vm", "console", "m1", "--log"}).out;
  EXPECT_EQ(log.find("VIREO-GUEST-READY"), std::string::npos)
      << "the guest did not boot again on the target: " << log;
  EXPECT_EQ(target.cli({"vm", "stop", "m1", "--force"}).exit_code, 0);
  EXPECT_EQ(target.cli({"vm", "rm", "m1"}).exit_code, 0);
}

// A VM with a NIC migrates between two vireods whose networks of one name are one L2 segment
// (a VXLAN network between their two vireo-netds, each with its own VTEP address on loopback):
// the guest keeps its address, and a namespace on the source's network pinging it every 20 ms
// all along keeps getting answers once it runs on the target. The VM's TAPs on the two hosts
// have different names (both exist while it migrates).
TEST(VmDaemonTest, MigrationWithANicKeepsTheAddressAndPingsAnswer) {
  net::testing::Lab lab;
  DaemonProcess source, target;
  ASSERT_TRUE(source.start({"--vxlan-local", "127.0.0.41"}));
  ASSERT_TRUE(target.start({"--vxlan-local", "127.0.0.42"}));
  const std::string net = lab.prefix() + "mig";
  auto r = source.cli({"net", "create", net, "--subnet", "10.78.0.0/24", "--gateway", "10.78.0.1",
                       "--dhcp", "--vxlan", "7801", "--remote", "127.0.0.42"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = target.cli({"net", "create", net, "--subnet", "10.78.0.0/24", "--vxlan", "7801", "--remote",
                  "127.0.0.41"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string ns = lab.add_namespace("p");
  r = source.cli({"net", "port", "add", net, "--iface", lab.add_host(ns, "10.78.0.200/24", "hp")});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  r = source.cli({"vm", "create", "n1", "--kernel", guest().kernel, "--initrd", guest().initrd,
                  "--cmdline", "console=ttyS0 quiet", "--nic", net, "--start"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(console_shows(source, "n1", "VIREO-GUEST-READY"));
  std::smatch m;
  const std::string log = source.cli({"vm", "console", "n1", "--log"}).out;
  ASSERT_TRUE(std::regex_search(log, m, std::regex("eth0 (10\\.78\\.0\\.[0-9]+)/24"))) << log;
  const std::string ip = m[1];
  ASSERT_TRUE(lab.ping_until(ns, ip, 30s));

  ProcessResult pings;
  std::thread pinger([&] {
    pings = lab.in(ns, {"ping", "-n", "-i", "0.02", "-c", "300", ip}, 30000);
  });
  auto moved = source.cli({"--format", "json", "vm", "migrate", "n1", "--to", target.socket()});
  pinger.join();
  ASSERT_EQ(moved.exit_code, 0) << moved.err;
  ASSERT_TRUE(std::regex_search(pings.out, m,
                                std::regex("([0-9]+) packets transmitted, ([0-9]+) received")))
      << pings.out << pings.err;
  const int sent = std::stoi(m[1]), answered = std::stoi(m[2]);
  Json stats = parse_json(moved.out).value_or(Json());
  std::printf(
      "migration with a NIC: downtime %s ms (QEMU); ping every 20 ms: %d sent, %d "
      "answered (~%d ms without answers)\n",
      stats.value("downtime_ms", Json()).dump().c_str(), sent, answered, (sent - answered) * 20);
  EXPECT_EQ(sent, 300);
  EXPECT_GE(answered, sent - 100) << "over 2 s without answers: " << pings.out;
  EXPECT_EQ(status_of(target, "n1"), "running");
  EXPECT_TRUE(lab.ping_until(ns, ip, 10s)) << "the guest answers from the target";
  PtyCli console(target, {"vm", "console", "n1"});
  ASSERT_TRUE(console.started());
  console.type("ip -4 -o addr show dev eth0\r");
  EXPECT_TRUE(console.expect(ip + "/24")) << console.output();
  console.type("\x1d");
  EXPECT_EQ(console.wait(), 0);
  EXPECT_EQ(target.cli({"vm", "stop", "n1", "--force"}).exit_code, 0);
  EXPECT_EQ(target.cli({"vm", "rm", "n1"}).exit_code, 0);
}

// Starts tshark on loopback keeping the first 128 bytes of every TCP packet not to or from
// port `except`; stop() ends it and returns the capture.
class LoopbackCapture {
 public:
  LoopbackCapture(const fs::path& pcap, uint16_t except) : pcap_(pcap) {
    thread_ = std::thread([this, except] {
      (void)run_process({"tshark", "-q", "-i", "lo", "-s", "128", "-f",
                         "tcp and not port " + std::to_string(except), "-w", pcap_.string()},
                        RunOptions{.timeout = std::chrono::milliseconds(300'000)});
    });
    // The file appears once the capture runs.
    for (auto end = std::chrono::steady_clock::now() + 20s;
         !fs::exists(pcap_) && std::chrono::steady_clock::now() < end;)
      std::this_thread::sleep_for(10ms);
  }
  ~LoopbackCapture() { (void)stop(); }
  std::string stop() {
    if (!thread_.joinable()) return {};
    (void)run_process({"pkill", "-INT", "-f", pcap_.string()});
    thread_.join();
    return read_file(pcap_).value_or("");
  }
  bool started() const { return fs::exists(pcap_); }

 private:
  fs::path pcap_;
  std::thread thread_;
};

// Migration between two vireods over TCP (the target reached as HOST:PORT): the RAM stream
// and the disk copy (NBD mirror into a volume the target makes) go over TCP to the address the
// source called, encrypted: a capture of loopback holds neither the start of a plain QEMU
// migration stream ("QEVM") nor a plain NBD reply (magic 0x67446698; NBD switches to TLS with
// STARTTLS). What the guest wrote before is read back from the target's disk, the source's
// volume is gone (a move). A target that already has a volume of that name refuses, and the
// guest runs on at the source with nothing left on the target.
TEST(VmDaemonTest, MigrationOverTcpCopiesVolumeDisks) {
  DaemonProcess source, target;
  ASSERT_TRUE(source.start());
  make_cert(target.dir(), "server");
  auto token = run_process({bin_dir() + "/vireod", "--root", target.root().string(), "token",
                            "create", "--name", "source"});
  ASSERT_TRUE(token && token->ok()) << (token ? token->err : "");
  const std::string remote = "127.0.0.1:" + std::to_string(free_port());
  ASSERT_TRUE(
      target.start({"--listen", remote, "--tls-cert", (target.dir() / "server.crt").string(),
                    "--tls-key", (target.dir() / "server.key").string()}));
  const std::vector<std::string> to = {"--to",       remote,
                                       "--to-token", std::string(trim(token->out)),
                                       "--to-ca",    (target.dir() / "server.crt").string()};
  auto migrate = [&](std::vector<std::string> args) {
    args.insert(args.end(), to.begin(), to.end());
    return source.cli(args);
  };
  // Over TCP the target takes the stream only from the certificate the source sent with its
  // request: a request without one is refused before anything is made.
  for (const std::string cert : {"", R"(, "client_cert": "not a certificate")"}) {
    auto refused = raw_http(
        target.socket(), http_request("POST", "/1.0/vms/v9/incoming",
                                      R"({"definition": {}, "listen": "127.0.0.1")" + cert + "}"));
    EXPECT_EQ(refused.status, 400) << refused.head;
    EXPECT_NE(refused.body.dump().find("client_cert"), std::string::npos) << refused.body.dump();
  }
  ASSERT_TRUE(start_on_new_volume(source, "v1", "default/md"));
  StopAtEnd stop_source{source, "v1"};
  {
    GuestShell sh(source, "v1");
    ASSERT_TRUE(sh.ready()) << sh.output();
    ASSERT_TRUE(sh.run(write_marker("/dev/vda", "moved-disk"))) << sh.output();
  }
  ASSERT_EQ(target.cli({"vol", "create", "default/md", "--size", "1M"}).exit_code, 0);
  auto clash = migrate({"vm", "migrate", "v1"});
  EXPECT_EQ(clash.exit_code, 1);
  EXPECT_NE(clash.err.find("md"), std::string::npos) << clash.err;
  EXPECT_EQ(status_of(source, "v1"), "running");
  EXPECT_EQ(target.cli({"vm", "show", "v1"}).exit_code, 1) << "nothing left on the target";
  ASSERT_EQ(target.cli({"vol", "rm", "default/md"}).exit_code, 0);

  LoopbackCapture capture(target.dir() / "migration.pcap",
                          static_cast<uint16_t>(std::stoi(remote.substr(remote.rfind(':') + 1))));
  ASSERT_TRUE(capture.started());
  auto moved = migrate({"--format", "json", "vm", "migrate", "v1"});
  const std::string wire = capture.stop();
  ASSERT_EQ(moved.exit_code, 0) << moved.err;
  StopAtEnd stop_target{target, "v1"};
  Json stats = parse_json(moved.out).value_or(Json());
  std::printf("migration over TCP with a 16 MiB volume copied: total %s ms, downtime %s ms\n",
              stats.value("total_ms", Json()).dump().c_str(),
              stats.value("downtime_ms", Json()).dump().c_str());
  EXPECT_EQ(stats.value("disks_copied", 0), 1) << moved.out;
  EXPECT_TRUE(stats.value("stream", "").starts_with("tcp:127.0.0.1:")) << moved.out;
  EXPECT_TRUE(stats.value("encrypted", false)) << moved.out;
  EXPECT_GT(wire.size(), 20'000u) << "the capture saw the migration";
  EXPECT_EQ(wire.find("QEVM"), std::string::npos) << "a plain migration stream crossed";
  EXPECT_EQ(wire.find("\x67\x44\x66\x98"), std::string::npos) << "plain NBD replies crossed";
  EXPECT_EQ(status_of(target, "v1"), "running");
  EXPECT_EQ(source.cli({"vol", "show", "default/md"}).exit_code, 1) << "the source's copy went";
  EXPECT_EQ(cli_json(target, {"vol", "show", "default/md"}).value("size", 0ull), 16ull << 20);
  GuestShell sh(target, "v1");
  ASSERT_TRUE(sh.attached()) << sh.output();
  ASSERT_TRUE(sh.run("echo 3 > /proc/sys/vm/drop_caches")) << sh.output();
  EXPECT_TRUE(sh.shows("/dev/vda", "moved-disk")) << sh.output();
}

// vireo-storaged killed under a running VM whose disk it serves: QEMU reconnects to the one
// vireod starts again, and the guest's I/O goes on (held, not failed, while it was away).
TEST(VmDaemonTest, VolumeDiskSurvivesAStoragedRestart) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(start_on_new_volume(d, "s1", "default/sr"));
  StopAtEnd stop_at_end{d, "s1"};
  GuestShell sh(d, "s1");
  ASSERT_TRUE(sh.ready()) << sh.output();
  ASSERT_TRUE(sh.run(write_marker("/dev/vda", "before-restart"))) << sh.output();
  const pid_t storaged = d.storaged_pid();
  ASSERT_GT(storaged, 0);
  ASSERT_EQ(::kill(storaged, SIGKILL), 0);
  for (auto end = std::chrono::steady_clock::now() + 10s;
       ::kill(storaged, 0) == 0 && std::chrono::steady_clock::now() < end;)
    std::this_thread::sleep_for(10ms);  // reaped by init: no event reaches the test
  ASSERT_EQ(d.cli({"vol", "ls", "default"}).exit_code, 0) << "vireod starts vireo-storaged again";
  EXPECT_NE(d.storaged_pid(), storaged);
  ASSERT_TRUE(sh.run(write_marker("/dev/vda", "after-restart"))) << sh.output();
  ASSERT_TRUE(sh.run("echo 3 > /proc/sys/vm/drop_caches")) << sh.output();
  EXPECT_TRUE(sh.shows("/dev/vda", "after-restart")) << sh.output();
  EXPECT_EQ(sh.output().find("I/O error"), std::string::npos) << sh.output();
}

// `vm edit` through $EDITOR (here a sed script): a valid change is saved, an invalid one is
// refused and changes nothing.
TEST(VmDaemonTest, EditSavesValidChangesOnly) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  ASSERT_EQ(d.cli({"vm", "create", "e1", "--kernel", guest().kernel}).exit_code, 0);
  // The "editor": a script that rewrites the vcpus line of the file it is given.
  auto edit = [&](int from, int to) {
    fs::path script = d.dir() / "editor.sh";
    write_file_atomic(
        script,
        fmt::format("#!/bin/sh\nsed -i 's/\"vcpus\": {}/\"vcpus\": {}/' \"$1\"\n", from, to), 0755)
        .value();
    auto r = run_process({bin_dir() + "/vireo", "--socket", d.socket(), "vm", "edit", "e1"},
                         {.timeout = 30s, .extra_env = {"EDITOR=" + script.string()}});
    return r ? r->exit_code : -1;
  };
  EXPECT_EQ(edit(1, 2), 0);
  EXPECT_EQ(vm_json(d, "e1").value("vcpus", 0), 2);
  EXPECT_EQ(edit(2, 0), 1);
  EXPECT_EQ(vm_json(d, "e1").value("vcpus", 0), 2);
}

// vm rm --volumes takes the VM's volume disks with it; without, they stay.
TEST(VmDaemonTest, RmWithVolumesDeletesTheVolumeDisks) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  for (const char* v : {"default/r1", "default/r2"})
    ASSERT_EQ(d.cli({"vol", "create", v, "--size", "4M"}).exit_code, 0);
  ASSERT_EQ(
      d.cli({"vm", "create", "k1", "--kernel", guest().kernel, "--disk", "default/r1"}).exit_code,
      0);
  ASSERT_EQ(
      d.cli({"vm", "create", "k2", "--kernel", guest().kernel, "--disk", "default/r2"}).exit_code,
      0);
  auto r = d.cli({"vm", "rm", "k1", "--volumes"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(d.cli({"vol", "show", "default/r1"}).exit_code, 1);
  EXPECT_EQ(d.cli({"vm", "rm", "k2"}).exit_code, 0);
  EXPECT_EQ(d.cli({"vol", "show", "default/r2"}).exit_code, 0);
}

TEST(VmDaemonTest, BadDefinitionsAreRefusedAndLeaveNothing) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  struct Case {
    std::vector<std::string> args;
    std::string error;
  };
  const std::vector<Case> cases = {
      {{"vm", "create", "b1"}, "a VM needs something to boot: a kernel or at least one disk"},
      {{"vm", "create", "b2", "--kernel", guest().kernel, "--memory", "lots"}, "memory"},
      {{"vm", "create", "b3", "--kernel", guest().kernel, "--cpus", "0"},
       "field 'vcpus' must be between 1 and 128"},
      {{"vm", "create", "b4", "--kernel", "/etc/hostname"}, "/etc/hostname"},
      {{"vm", "create", "b5", "--kernel", "/nonexistent/vmlinuz"},
       "field 'kernel': /nonexistent/vmlinuz does not exist"},
      {{"vm", "create", "b6", "--disk", "/nonexistent.qcow2"}, "does not exist"},
      {{"vm", "create", "b7", "--kernel", guest().kernel, "--machine", "pc98"},
       "field 'machine' must be q35 or microvm"},
      {{"vm", "create", "b8", "--kernel", guest().kernel, "--nic", "nowhere"},
       "network nowhere not found"},
  };
  for (const auto& c : cases) {
    auto r = d.cli(c.args);
    EXPECT_EQ(r.exit_code, 1) << c.args[2];
    EXPECT_NE(r.err.find(c.error), std::string::npos) << c.args[2] << ": " << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
  }
  EXPECT_EQ(d.cli({"--format", "json", "vm", "ls"}).out, "[]\n");
  auto bad_action = d.cli({"vm", "start", "missing"});
  EXPECT_EQ(bad_action.exit_code, 1);
  EXPECT_NE(bad_action.err.find("missing"), std::string::npos) << bad_action.err;
}

}  // namespace
}  // namespace vireo::testing
