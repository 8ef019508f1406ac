// End-to-end tests of VmProcess with real QEMU (TCG) and the test guest from scripts/guest-image.
#include "compute/vm_process.h"

#include <sched.h>
#include <signal.h>
#include <spawn.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "base/ids.h"
#include "base/subprocess.h"
#include "compute/cpu_pinning.h"
#include "compute/qemu_command.h"
#include "compute/tap_device.h"

extern char** environ;

namespace vireo::compute {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr auto kBootTimeout = 90s;  // TCG boot takes ~3 s; the margin is for a loaded CI host

struct GuestImage {
  std::string kernel, initrd, disk;
};

// The guest from .cache/guest, built by scripts/guest-image when absent (CI runs it first).
const GuestImage& guest_image() {
  static const GuestImage image = [] {
    const char* src = std::getenv("VIREO_SOURCE_DIR");
    fs::path root = src ? src : VIREO_SOURCE_DIR_FALLBACK;
    fs::path dir = root / ".cache" / "guest";
    GuestImage g{(dir / "vmlinuz").string(), (dir / "initramfs.cpio.gz").string(),
                 (dir / "rootfs.ext4").string()};
    if (!fs::exists(g.kernel) || !fs::exists(g.initrd) || !fs::exists(g.disk)) {
      auto r = run_process({(root / "scripts" / "guest-image").string()}, {.timeout = 300s});
      if (!r || !r->ok())
        ADD_FAILURE() << "scripts/guest-image failed: " << (r ? r->err : r.error().message());
    }
    return g;
  }();
  return image;
}

class VmProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("vireo-vm-" + random_hex(4));
    fs::create_directories(root_);
    const auto& g = guest_image();
    spec_ = VmSpec{.name = "vm1",
                   .uuid = random_uuid(),
                   .vcpus = 1,
                   .memory_mib = 256,
                   .kernel = g.kernel,
                   .initrd = g.initrd,
                   .cmdline = "console=ttyS0 quiet",
                   .disks = {{.path = g.disk, .access = Access::kReadOnly}}};
  }
  void TearDown() override {
    // A test that failed half-way may leave QEMU running: end it before removing its files.
    if (auto vm = VmProcess::attach(root_ / "vm1")) (void)(*vm)->stop(StopMode::kForce, 1s);
    if (!tap_.empty()) delete_tap(tap_);  // only once QEMU, which holds it open, is gone
    fs::remove_all(root_);
  }
  VmProcessOptions options() {
    return {.on_event =
                [this](const QmpEvent& e) {
                  std::lock_guard lock(mutex_);
                  events_.push_back(e.name);
                },
            .on_exit = [this](const ExitInfo&) { exit_callbacks_++; }};
  }
  std::unique_ptr<VmProcess> start_and_wait_ready() {
    auto vm = VmProcess::start(spec_, root_ / "vm1", options());
    EXPECT_TRUE(vm) << vm.error().message();
    if (!vm) return nullptr;
    EXPECT_NE((*vm)->console(), nullptr);
    auto ready = (*vm)->console()->wait_for("VIREO-GUEST-READY", kBootTimeout);
    EXPECT_TRUE(ready) << ready.error().message() << "\nconsole:\n" << (*vm)->console()->recent();
    return std::move(*vm);
  }
  bool saw_event(const std::string& name) {
    std::lock_guard lock(mutex_);
    return std::find(events_.begin(), events_.end(), name) != events_.end();
  }

  fs::path root_;
  std::string tap_;
  VmSpec spec_;
  std::mutex mutex_;
  std::vector<std::string> events_;
  std::atomic<int> exit_callbacks_{0};
};

TEST_F(VmProcessTest, BootsToReadyAndPowersOffThroughAcpi) {
  auto vm = start_and_wait_ready();
  ASSERT_TRUE(vm);
  EXPECT_EQ(*vm->status(), "running");
  EXPECT_NE(vm->console()->recent().find("disk vda (ext4) mounted"), std::string::npos);
  auto info = vm->stop(StopMode::kGraceful, 30s);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_TRUE(info->status_known);
  EXPECT_EQ(info->exit_code, 0);
  EXPECT_EQ(info->shutdown_reason, "guest-shutdown") << info->describe();
  EXPECT_TRUE(saw_event("SHUTDOWN"));
  EXPECT_EQ(exit_callbacks_, 1);
  // The serial output is kept in the run directory.
  EXPECT_NE(tail_lines(root_ / "vm1" / "console.log", 1000).find("VIREO-GUEST-READY"),
            std::string::npos);
  auto again = VmProcess::attach(root_ / "vm1");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kNotFound);
}

uint64_t tap_counter(const std::string& tap, const std::string& counter) {
  uint64_t value = 0;
  std::ifstream(fs::path("/sys/class/net") / tap / "statistics" / counter) >> value;
  return value;
}

// microvm under TCG: the guest finds its virtio-mmio disk and NIC through microvm's ACPI tables,
// and its power button (ACPI GED) powers it off.
TEST_F(VmProcessTest, MicrovmBootsWithVirtioMmioDiskAndNic) {
  tap_ = "vmtap" + random_hex(4);
  ASSERT_TRUE(create_tap(tap_));
  spec_.machine = Machine::kMicrovm;
  spec_.cmdline += " vireo.ip=10.213.7.2/24";
  spec_.nics = {{.tap = tap_, .mac = stable_mac(spec_.uuid, 0)}};
  auto vm = start_and_wait_ready();
  ASSERT_TRUE(vm);
  std::string console = vm->console()->recent();
  EXPECT_NE(console.find("vireo-guest: disk vda (ext4) mounted on /mnt/vda"), std::string::npos)
      << console;
  EXPECT_NE(console.find("vireo-guest: eth0 10.213.7.2/24"), std::string::npos) << console;

  // The NIC's datapath: the guest's ARP request for its neighbour arrives on the host's TAP.
  uint64_t before = tap_counter(tap_, "rx_packets");
  ASSERT_TRUE(
      vm->console()->write("ping -c 1 -W 1 10.213.7.1 >/dev/null; echo vireo-ping-$((1+1))\n"));
  auto pinged = vm->console()->wait_for("vireo-ping-2", 30s);
  EXPECT_TRUE(pinged) << pinged.error().message() << "\n" << vm->console()->recent();
  EXPECT_GT(tap_counter(tap_, "rx_packets"), before);

  auto info = vm->stop(StopMode::kGraceful, 30s);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->shutdown_reason, "guest-shutdown") << info->describe();
}

TEST_F(VmProcessTest, ReattachesAfterTheRunnerIsDropped) {
  auto first = start_and_wait_ready();
  ASSERT_TRUE(first);
  pid_t pid = first->pid();
  first.reset();  // the daemon goes away; the VM must not
  ASSERT_EQ(::kill(pid, 0), 0) << "QEMU died with its runner";

  // Spelled differently from start(), as a daemon with another working directory might.
  auto vm = VmProcess::attach(root_ / "." / "vm1/", options());
  ASSERT_TRUE(vm) << vm.error().message();
  EXPECT_EQ((*vm)->pid(), pid);
  EXPECT_EQ(*(*vm)->status(), "running");
  // The console works through the new runner: the guest shell answers.
  ASSERT_NE((*vm)->console(), nullptr);
  ASSERT_TRUE((*vm)->console()->write("echo vireo-$((6*7))-answer\n"));
  auto answer = (*vm)->console()->wait_for("vireo-42-answer", 30s);
  EXPECT_TRUE(answer) << answer.error().message() << "\n" << (*vm)->console()->recent();
  // A second start in the same run directory is refused while QEMU runs there.
  auto twice = VmProcess::start(spec_, root_ / "vm1");
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code(), ErrorCode::kConflict);

  ASSERT_TRUE((*vm)->pause());
  EXPECT_EQ(*(*vm)->status(), "paused");
  ASSERT_TRUE((*vm)->resume());
  EXPECT_EQ(*(*vm)->status(), "running");
  auto info = (*vm)->stop(StopMode::kForce, 10s);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->shutdown_reason, "host-qmp-quit");
  EXPECT_TRUE(saw_event("STOP"));
  EXPECT_TRUE(saw_event("RESUME"));
}

TEST_F(VmProcessTest, VmSurvivesItsStarterBeingKilledAndIsAdoptedByANewOne) {
  const auto& g = guest_image();
  auto helper = run_process({VM_START_HELPER, (root_ / "vm1").string(), g.kernel, g.initrd},
                            {.timeout = kBootTimeout + 30s});
  ASSERT_TRUE(helper) << helper.error().message();
  ASSERT_EQ(helper->term_signal, SIGKILL) << helper->err;
  pid_t pid = std::stoi(helper->out);

  auto vm = VmProcess::attach(root_ / "vm1", options());
  ASSERT_TRUE(vm) << vm.error().message();
  EXPECT_EQ((*vm)->pid(), pid);
  EXPECT_EQ(*(*vm)->status(), "running");
  // QEMU is no longer anyone's child here: the exit is seen, its numeric status is not.
  auto info = (*vm)->stop(StopMode::kGraceful, 30s);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_FALSE(info->status_known);
  EXPECT_EQ(info->shutdown_reason, "guest-shutdown");
  EXPECT_EQ(exit_callbacks_, 1);
}

TEST_F(VmProcessTest, AttachResumesAVmItsStarterLeftPaused) {
  // What a daemon that died inside start(), between spawning QEMU (-S) and resuming it, leaves.
  RunDir rd{root_ / "vm1"};
  fs::create_directories(rd.dir);
  auto argv = build_qemu_command(spec_, {.qmp_socket = rd.qmp_socket().string(),
                                         .console_socket = rd.console_socket().string(),
                                         .pidfile = rd.pidfile().string()});
  ASSERT_TRUE(argv) << argv.error().message();
  argv->insert(argv->begin() + 1, "-S");
  std::vector<char*> args;
  for (auto& a : *argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(::posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ), 0);
  // Attach retries until QEMU has written its pidfile and listens.
  Result<std::unique_ptr<VmProcess>> vm = make_error(ErrorCode::kNotFound, "not yet");
  for (int i = 0; i < 1000 && !vm; ++i) {
    vm = VmProcess::attach(rd.dir, options());
    if (!vm) std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(vm) << vm.error().message();
  EXPECT_EQ((*vm)->pid(), pid);
  auto ready = (*vm)->console()->wait_for("VIREO-GUEST-READY", kBootTimeout);
  EXPECT_TRUE(ready) << ready.error().message();
  // Started paused, so the console log has the guest's output from its first line.
  EXPECT_NE((*vm)->console()->recent().find("vireo-guest: disk vda"), std::string::npos);
  auto info = (*vm)->stop(StopMode::kForce, 5s);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_TRUE(info->status_known);
}

TEST_F(VmProcessTest, KilledQemuIsDetectedWithItsExitStatus) {
  auto vm = VmProcess::start(spec_, root_ / "vm1", options());
  ASSERT_TRUE(vm) << vm.error().message();
  ASSERT_EQ(::kill((*vm)->pid(), SIGKILL), 0);
  auto info = (*vm)->wait_exit(10s);
  ASSERT_TRUE(info);
  EXPECT_TRUE(info->status_known);
  EXPECT_EQ(info->term_signal, SIGKILL);
  EXPECT_EQ(info->describe(), "killed by signal 9 (Killed)");
  EXPECT_NE(info->log_tail.find("starting:"), std::string::npos) << info->log_tail;
  EXPECT_EQ(exit_callbacks_, 1);
  EXPECT_TRUE((*vm)->exited());
}

TEST_F(VmProcessTest, QemuFailingAtStartIsReportedWithItsLogAndLeavesNothing) {
  spec_.disks[0].format = DiskFormat::kQcow2;  // the disk is raw: QEMU refuses to open it
  auto vm = VmProcess::start(spec_, root_ / "vm1");
  ASSERT_FALSE(vm);
  EXPECT_NE(vm.error().message().find("exited with status 1"), std::string::npos)
      << vm.error().message();
  EXPECT_NE(vm.error().message().find("qcow2"), std::string::npos) << vm.error().message();
  auto attached = VmProcess::attach(root_ / "vm1");
  EXPECT_FALSE(attached);
}

// Each vCPU thread is pinned to its host CPU; the kernel reports the affinity back.
TEST_F(VmProcessTest, VcpusArePinnedToTheirHostCpus) {
  if (::sysconf(_SC_NPROCESSORS_ONLN) < 2) GTEST_SKIP() << "needs two host CPUs";
  spec_.vcpus = 2;
  auto vm = start_and_wait_ready();
  ASSERT_TRUE(vm);
  ASSERT_TRUE(pin_vcpus(vm->qmp(), {1, 0}));
  auto threads = vcpu_threads(*vm->qmp().execute("query-cpus-fast"));
  ASSERT_TRUE(threads);
  ASSERT_EQ(threads->size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    cpu_set_t set;
    CPU_ZERO(&set);
    ASSERT_EQ(::sched_getaffinity((*threads)[i], sizeof set, &set), 0);
    EXPECT_EQ(CPU_COUNT(&set), 1) << "vCPU " << i;
    EXPECT_TRUE(CPU_ISSET(i == 0 ? 1 : 0, &set)) << "vCPU " << i;
  }
  auto bad = pin_vcpus(vm->qmp(), {0});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("for 2 vCPUs"), std::string::npos);
  EXPECT_TRUE(vm->stop(StopMode::kForce, 5s));
}

TEST_F(VmProcessTest, InvalidSpecFailsBeforeQemuStarts) {
  spec_.memory_mib = 1;
  auto vm = VmProcess::start(spec_, root_ / "vm1");
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(root_ / "vm1")) << "a rejected spec must leave nothing behind";
}

}  // namespace
}  // namespace vireo::compute
