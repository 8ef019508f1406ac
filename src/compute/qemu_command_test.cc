#include "compute/qemu_command.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "base/json.h"

namespace vireo::compute {
namespace {

namespace fs = std::filesystem;

class QemuCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("vireo-qemu-cmd-{}-{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    kernel_ = write_kernel("bzImage");
    initrd_ = write_file("initrd.gz", "initrd");
    disk_ = write_file("disk.img", std::string(4096, '\0'));
    paths_ = {.qmp_socket = (dir_ / "qmp.sock").string(),
              .console_socket = (dir_ / "console.sock").string(),
              .pidfile = (dir_ / "qemu.pid").string()};
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write_file(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name, std::ios::binary) << content;
    return (dir_ / name).string();
  }
  // The smallest file that passes the bzImage header check.
  std::string write_kernel(const std::string& name) {
    std::string image(4096, '\0');
    image[0x1fe] = '\x55';
    image[0x1ff] = '\xaa';
    image.replace(0x202, 4, "HdrS");
    return write_file(name, image);
  }
  VmSpec kernel_spec() {
    return VmSpec{.name = "vm1",
                  .uuid = "0b4c5a8e-3f0d-4b5e-9a55-3c1d2e4f6a7b",
                  .vcpus = 2,
                  .memory_mib = 512,
                  .kernel = kernel_,
                  .initrd = initrd_,
                  .cmdline = "console=ttyS0 quiet"};
  }
  // The error message of a spec that must fail.
  std::string error_of(const VmSpec& spec) {
    auto argv = build_qemu_command(spec, paths_);
    EXPECT_FALSE(argv) << "spec unexpectedly accepted";
    return argv ? "" : argv.error().message();
  }

  fs::path dir_;
  std::string kernel_, initrd_, disk_;
  QemuPaths paths_;
};

// The value following option opt, or "" when absent; nth picks among repeated options.
std::string value_of(const std::vector<std::string>& argv, const std::string& opt, int nth = 0) {
  for (size_t i = 0; i + 1 < argv.size(); ++i)
    if (argv[i] == opt && nth-- == 0) return argv[i + 1];
  return "";
}

bool has(const std::vector<std::string>& argv, const std::string& arg) {
  return std::find(argv.begin(), argv.end(), arg) != argv.end();
}

TEST_F(QemuCommandTest, KernelBootCommandLineIsLockedDown) {
  auto argv = build_qemu_command(kernel_spec(), paths_, "/usr/bin/qemu-system-x86_64");
  ASSERT_TRUE(argv) << argv.error().message();
  EXPECT_EQ((*argv)[0], "/usr/bin/qemu-system-x86_64");
  EXPECT_TRUE(has(*argv, "-nodefaults"));
  EXPECT_TRUE(has(*argv, "-no-user-config"));
  EXPECT_FALSE(has(*argv, "-daemonize"));
  EXPECT_EQ(value_of(*argv, "-display"), "none");
  EXPECT_TRUE(value_of(*argv, "-sandbox").starts_with("on,"));
  EXPECT_NE(value_of(*argv, "-sandbox").find("spawn=deny"), std::string::npos);
  EXPECT_EQ(value_of(*argv, "-name"), "guest=vm1,debug-threads=on");
  EXPECT_EQ(value_of(*argv, "-uuid"), "0b4c5a8e-3f0d-4b5e-9a55-3c1d2e4f6a7b");
  EXPECT_EQ(value_of(*argv, "-machine"), "q35");
  EXPECT_EQ(value_of(*argv, "-accel"), "tcg");
  EXPECT_FALSE(has(*argv, "-cpu"));
  EXPECT_EQ(value_of(*argv, "-smp"), "2");
  EXPECT_EQ(value_of(*argv, "-m"), "512M");
  EXPECT_EQ(value_of(*argv, "-kernel"), kernel_);
  EXPECT_EQ(value_of(*argv, "-initrd"), initrd_);
  EXPECT_EQ(value_of(*argv, "-append"), "console=ttyS0 quiet");
  EXPECT_EQ(value_of(*argv, "-pidfile"), paths_.pidfile);
  EXPECT_EQ(value_of(*argv, "-chardev", 0),
            "socket,id=qmp,path=" + paths_.qmp_socket + ",server=on,wait=off");
  EXPECT_EQ(value_of(*argv, "-mon"), "chardev=qmp,mode=control");
  EXPECT_EQ(value_of(*argv, "-chardev", 1),
            "socket,id=console,path=" + paths_.console_socket + ",server=on,wait=off");
  EXPECT_EQ(value_of(*argv, "-serial"), "chardev:console");
}

TEST_F(QemuCommandTest, KvmUsesHostCpuUnlessAModelIsNamed) {
  auto spec = kernel_spec();
  spec.accelerator = Accelerator::kKvm;
  auto argv = build_qemu_command(spec, paths_);
  ASSERT_TRUE(argv);
  EXPECT_EQ(value_of(*argv, "-accel"), "kvm");
  EXPECT_EQ(value_of(*argv, "-cpu"), "host");
  spec.cpu_model = "Skylake-Server";
  argv = build_qemu_command(spec, paths_);
  ASSERT_TRUE(argv);
  EXPECT_EQ(value_of(*argv, "-cpu"), "Skylake-Server");
}

TEST_F(QemuCommandTest, DisksBecomeBlockdevNodesAndVirtioDevices) {
  auto spec = kernel_spec();
  spec.disks = {
      {.path = disk_, .format = DiskFormat::kQcow2},
      {.nbd_uri = "nbd+unix:///vol1?socket=/run/vireo/nbd.sock", .access = Access::kReadOnly}};
  auto argv = build_qemu_command(spec, paths_);
  ASSERT_TRUE(argv) << argv.error().message();
  auto file = parse_json(value_of(*argv, "-blockdev", 0));
  ASSERT_TRUE(file);
  EXPECT_EQ((*file)["driver"], "file");
  EXPECT_EQ((*file)["filename"], disk_);
  auto qcow2 = parse_json(value_of(*argv, "-blockdev", 1));
  ASSERT_TRUE(qcow2);
  EXPECT_EQ((*qcow2)["driver"], "qcow2");
  EXPECT_EQ((*qcow2)["file"], "disk0-proto");
  // On q35 each device has its own root port, so it can be unplugged.
  EXPECT_EQ(value_of(*argv, "-device", 0), "pcie-root-port,id=port-disk0,chassis=1");
  EXPECT_EQ(value_of(*argv, "-device", 1),
            "virtio-blk-pci,drive=disk0-fmt,id=disk0,bus=port-disk0");
  auto nbd = parse_json(value_of(*argv, "-blockdev", 2));
  ASSERT_TRUE(nbd);
  EXPECT_EQ((*nbd)["driver"], "nbd");
  EXPECT_EQ((*nbd)["reconnect-delay"], 60) << "a restarted vireo-storaged is reconnected to";
  EXPECT_EQ((*nbd)["export"], "vol1");
  EXPECT_EQ((*nbd)["server"]["path"], "/run/vireo/nbd.sock");
  EXPECT_EQ((*nbd)["read-only"], true);
  auto raw = parse_json(value_of(*argv, "-blockdev", 3));
  ASSERT_TRUE(raw);
  EXPECT_EQ((*raw)["driver"], "raw");
}

TEST_F(QemuCommandTest, DiskBootMarksFirstDiskBootable) {
  VmSpec spec{.name = "diskboot", .disks = {{.path = disk_}}};
  auto argv = build_qemu_command(spec, paths_);
  ASSERT_TRUE(argv) << argv.error().message();
  EXPECT_FALSE(has(*argv, "-kernel"));
  EXPECT_EQ(value_of(*argv, "-device", 1),
            "virtio-blk-pci,drive=disk0-fmt,id=disk0,bus=port-disk0,bootindex=0");
}

TEST_F(QemuCommandTest, UefiAddsReadOnlyCodeAndWritableVarsFlash) {
  const std::string code = write_file("CODE,1.fd", "code"), vars = write_file("VARS.fd", "vars");
  VmSpec spec{.name = "uefi", .uefi_code = code, .uefi_vars = vars, .disks = {{.path = disk_}}};
  auto argv = build_qemu_command(spec, paths_);
  ASSERT_TRUE(argv) << argv.error().message();
  EXPECT_EQ(value_of(*argv, "-drive", 0),
            "if=pflash,format=raw,unit=0,readonly=on,file=" + (dir_ / "CODE,,1.fd").string());
  EXPECT_EQ(value_of(*argv, "-drive", 1), "if=pflash,format=raw,unit=1,file=" + vars);
  EXPECT_EQ(error_of(VmSpec{.name = "u", .uefi_code = code, .disks = {{.path = disk_}}}),
            "VM u: UEFI needs both the code and the vars file");
  spec.machine = Machine::kMicrovm;
  spec.kernel = kernel_;
  EXPECT_EQ(error_of(spec), "VM uefi: UEFI firmware needs machine q35");
  EXPECT_FALSE(has(*build_qemu_command(kernel_spec(), paths_), "-drive"));
}

TEST_F(QemuCommandTest, MicrovmUsesVirtioMmioDevices) {
  auto spec = kernel_spec();
  spec.machine = Machine::kMicrovm;
  spec.disks = {{.path = disk_}};
  spec.nics = {{.tap = "vtap0", .mac = "52:54:00:12:34:56"}};
  auto argv = build_qemu_command(spec, paths_);
  ASSERT_TRUE(argv) << argv.error().message();
  EXPECT_EQ(value_of(*argv, "-machine"), "microvm");
  EXPECT_EQ(value_of(*argv, "-device", 0), "virtio-blk-device,drive=disk0-fmt,id=disk0");
  EXPECT_EQ(value_of(*argv, "-device", 1),
            "virtio-net-device,netdev=nic0-tap,mac=52:54:00:12:34:56,id=nic0");
  EXPECT_EQ(value_of(*argv, "-device", 2), "virtio-balloon-device,id=balloon0,deflate-on-oom=on")
      << "no root ports, no hot-plug on microvm";
}

// microvm's hardware-reduced ACPI leaves Linux no timer to calibrate against; under TCG it is
// told the TSC rate, which is the host's. Under KVM kvmclock tells it, and q35 has HPET and PM
// timer.
TEST_F(QemuCommandTest, MicrovmUnderTcgTellsTheGuestItsTscRate) {
  ASSERT_GT(host_tsc_khz(), 100'000u) << "an x86 host has a TSC of at least 100 MHz";
  EXPECT_EQ(host_tsc_khz(), host_tsc_khz()) << "measured once";
  auto spec = kernel_spec();
  spec.machine = Machine::kMicrovm;
  auto argv = build_qemu_command(spec, paths_);
  ASSERT_TRUE(argv) << argv.error().message();
  EXPECT_EQ(value_of(*argv, "-append"),
            fmt::format("console=ttyS0 quiet tsc_early_khz={}", host_tsc_khz()));

  spec.cmdline.clear();
  argv = build_qemu_command(spec, paths_);
  ASSERT_TRUE(argv);
  EXPECT_EQ(value_of(*argv, "-append"), fmt::format("tsc_early_khz={}", host_tsc_khz()));

  spec.cmdline = "console=ttyS0 tsc_early_khz=1000000";  // the user's own value wins
  argv = build_qemu_command(spec, paths_);
  ASSERT_TRUE(argv);
  EXPECT_EQ(value_of(*argv, "-append"), spec.cmdline);

  spec.cmdline = "console=ttyS0";
  spec.accelerator = Accelerator::kKvm;
  argv = build_qemu_command(spec, paths_);
  ASSERT_TRUE(argv);
  EXPECT_EQ(value_of(*argv, "-append"), "console=ttyS0");

  spec.accelerator = Accelerator::kTcg;
  spec.machine = Machine::kQ35;
  argv = build_qemu_command(spec, paths_);
  ASSERT_TRUE(argv);
  EXPECT_EQ(value_of(*argv, "-append"), "console=ttyS0");
}

TEST_F(QemuCommandTest, NicsBecomeTapNetdevsWithoutHelperScripts) {
  auto spec = kernel_spec();
  spec.nics = {{.tap = "vtap0", .mac = "52:54:00:12:34:56"},
               {.tap = "vtap1", .mac = stable_mac(spec.uuid, 1)}};
  auto argv = build_qemu_command(spec, paths_);
  ASSERT_TRUE(argv) << argv.error().message();
  EXPECT_EQ(value_of(*argv, "-netdev", 0), "tap,id=nic0-tap,ifname=vtap0,script=no,downscript=no");
  EXPECT_EQ(value_of(*argv, "-device", 1),
            "virtio-net-pci,netdev=nic0-tap,mac=52:54:00:12:34:56,id=nic0,bus=port-nic0");
  EXPECT_EQ(value_of(*argv, "-netdev", 1), "tap,id=nic1-tap,ifname=vtap1,script=no,downscript=no");
  // Then the spare ports for hot-plug, and the balloon.
  EXPECT_EQ(value_of(*argv, "-device", 4), "pcie-root-port,id=hp0,chassis=3");
  EXPECT_EQ(value_of(*argv, "-device", 4 + kHotplugPorts),
            "virtio-balloon-pci,id=balloon0,deflate-on-oom=on");
}

TEST_F(QemuCommandTest, CommasInSocketPathsAreEscaped) {
  paths_.qmp_socket = (dir_ / "a,b" / "qmp.sock").string();
  auto argv = build_qemu_command(kernel_spec(), paths_);
  ASSERT_TRUE(argv);
  EXPECT_NE(value_of(*argv, "-chardev", 0).find("a,,b/qmp.sock"), std::string::npos);
}

TEST_F(QemuCommandTest, RejectsCountsOutOfRange) {
  auto spec = kernel_spec();
  spec.vcpus = 0;
  EXPECT_EQ(error_of(spec), "VM vm1: vcpus 0 out of range 1-128");
  spec.vcpus = 129;
  EXPECT_EQ(error_of(spec), "VM vm1: vcpus 129 out of range 1-128");
  spec.vcpus = 1;
  spec.memory_mib = 16;
  EXPECT_EQ(error_of(spec), "VM vm1: memory 16 MiB out of range 32-1048576 MiB");
  spec.memory_mib = kMaxMemoryMib + 1;
  EXPECT_NE(error_of(spec).find("out of range"), std::string::npos);
}

TEST_F(QemuCommandTest, RejectsMissingKernelAndFilesThatAreNotKernels) {
  auto spec = kernel_spec();
  spec.kernel = (dir_ / "absent").string();
  EXPECT_NE(error_of(spec).find("kernel " + spec.kernel + ": No such file"), std::string::npos);
  spec.kernel = write_file("notes.txt", std::string(8192, 'x'));
  EXPECT_NE(error_of(spec).find("not a Linux x86 kernel image"), std::string::npos);
  spec.kernel = write_file("tiny", "HdrS");
  EXPECT_NE(error_of(spec).find("not a Linux x86 kernel image"), std::string::npos);
  spec.kernel = dir_.string();
  EXPECT_NE(error_of(spec).find("not a regular file"), std::string::npos);
}

TEST_F(QemuCommandTest, RejectsIncoherentBoot) {
  VmSpec spec{.name = "vm1", .initrd = initrd_};
  EXPECT_EQ(error_of(spec), "VM vm1: initrd or cmdline given without a kernel");
  spec.initrd.clear();
  EXPECT_EQ(error_of(spec), "VM vm1: nothing to boot: no kernel and no disk");
  spec.machine = Machine::kMicrovm;
  spec.disks = {{.path = disk_}};
  EXPECT_EQ(error_of(spec), "VM vm1: machine microvm needs a kernel to boot");
  auto with_bad_initrd = kernel_spec();
  with_bad_initrd.initrd = (dir_ / "absent.gz").string();
  EXPECT_NE(error_of(with_bad_initrd).find("initrd"), std::string::npos);
}

TEST_F(QemuCommandTest, RejectsBadDisks) {
  auto spec = kernel_spec();
  spec.disks = {{.path = disk_}, {.path = (dir_ / "." / "disk.img").string()}};
  EXPECT_NE(error_of(spec).find("disk 1: " + spec.disks[1].path + " is attached twice"),
            std::string::npos);
  spec.disks = {{.path = (dir_ / "missing.img").string()}};
  EXPECT_NE(error_of(spec).find("No such file"), std::string::npos);
  spec.disks = {{.path = disk_, .nbd_uri = "nbd://h/e"}};
  EXPECT_NE(error_of(spec).find("exactly one of path and nbd_uri"), std::string::npos);
  spec.disks = {{.nbd_uri = "http://example/e"}};
  EXPECT_NE(error_of(spec).find("unsupported NBD URI"), std::string::npos);
  spec.disks = {{.nbd_uri = "nbd+unix:///vol"}};
  EXPECT_NE(error_of(spec).find("no ?socket=PATH"), std::string::npos);
}

TEST_F(QemuCommandTest, RejectsBadNics) {
  auto spec = kernel_spec();
  spec.nics = {{.tap = "vtap0", .mac = "53:54:00:12:34:56"}};
  EXPECT_NE(error_of(spec).find("invalid unicast MAC"), std::string::npos);
  spec.nics = {{.tap = "a-name-longer-than-15", .mac = "52:54:00:12:34:56"}};
  EXPECT_NE(error_of(spec).find("invalid TAP name"), std::string::npos);
  spec.nics = {{.tap = "vtap0", .mac = "52:54:00:12:34:56"},
               {.tap = "vtap0", .mac = "52:54:00:12:34:57"}};
  EXPECT_NE(error_of(spec).find("used twice"), std::string::npos);
}

TEST_F(QemuCommandTest, RejectsBadIdentityAndPaths) {
  auto spec = kernel_spec();
  spec.uuid = "not-a-uuid";
  EXPECT_NE(error_of(spec).find("invalid uuid"), std::string::npos);
  spec = kernel_spec();
  spec.name = "bad/name";
  EXPECT_FALSE(build_qemu_command(spec, paths_));
  spec = kernel_spec();
  paths_.qmp_socket = "/" + std::string(120, 'q');
  EXPECT_NE(error_of(spec).find("too long for a unix socket"), std::string::npos);
}

TEST(StableMacTest, IsStablePerUuidAndIndexAndUnicast) {
  auto a = stable_mac("0b4c5a8e-3f0d-4b5e-9a55-3c1d2e4f6a7b", 0);
  EXPECT_EQ(a, stable_mac("0b4c5a8e-3f0d-4b5e-9a55-3c1d2e4f6a7b", 0));
  EXPECT_NE(a, stable_mac("0b4c5a8e-3f0d-4b5e-9a55-3c1d2e4f6a7b", 1));
  EXPECT_NE(a, stable_mac("1b4c5a8e-3f0d-4b5e-9a55-3c1d2e4f6a7b", 0));
  EXPECT_TRUE(a.starts_with("52:54:00:"));
  EXPECT_EQ(a.size(), 17u);
}

}  // namespace
}  // namespace vireo::compute
