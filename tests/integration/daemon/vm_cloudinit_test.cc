// How VMs boot, through vireod and the CLI with the real guest under QEMU (TCG): the cloud-init
// NoCloud seed as the guest sees it (a read-only FAT disk labelled CIDATA with meta-data and
// user-data, read on the serial console like a user would), bad seed input refused, and a disk
// boot with no kernel through SeaBIOS (and OVMF when installed) from scripts/guest-image's
// boot.img.
#include <gtest/gtest.h>

#include <thread>

#include "base/file.h"
#include "base/json.h"
#include "cli_expect.h"
#include "client/client.h"
#include "daemon_process.h"
#include "guest.h"
#include "pty_cli.h"

namespace vireo::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A real ed25519 public key, as ssh-keygen writes it.
constexpr const char* kKey =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOn0sQ/fwqNzJ3aSHV2ZHuvoJFEjqmWV4tRcIOrhV/96 "
    "tester@vireo";

class VmBootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(d_.start());
    char tmpl[] = "/tmp/vireo-vmboot-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    files_ = tmpl;
  }
  void TearDown() override {
    for (const auto& vm : vms_) (void)d_.cli({"vm", "rm", "--force", vm});
    fs::remove_all(files_);
  }
  std::string file(const std::string& name, const std::string& content) {
    EXPECT_TRUE(write_file_atomic(files_ / name, content, 0600));
    return (files_ / name).string();
  }
  // Creates and starts a VM (removed at the end) and waits for the guest's READY marker on an
  // interactive console.
  void boot(const std::string& name, std::vector<std::string> args, PtyCli*& console) {
    args.insert(args.begin(), {"vm", "create", name});
    args.push_back("--start");
    vms_.push_back(name);
    auto created = d_.cli(args);
    ASSERT_EQ(created.exit_code, 0) << created.err;
    consoles_.push_back(
        std::make_unique<PtyCli>(d_, std::vector<std::string>{"vm", "console", name}));
    console = consoles_.back().get();
    ASSERT_TRUE(console->started());
    ASSERT_TRUE(console->expect("VIREO-GUEST-READY", 180s)) << console->output();
  }

  DaemonProcess d_;
  fs::path files_;
  std::vector<std::string> vms_;
  std::vector<std::unique_ptr<PtyCli>> consoles_;
};

TEST_F(VmBootTest, GuestSeesTheCloudInitSeed) {
  PtyCli* console = nullptr;
  boot("ci1",
       {"--kernel", guest().kernel, "--initrd", guest().initrd, "--cmdline", "console=ttyS0 quiet",
        "--hostname", "web-1", "--ssh-key", file("id.pub", std::string(kKey) + "\n")},
       console);
  if (HasFatalFailure()) return;
  const std::string uuid = cli_json(d_, {"vm", "show", "ci1"})["state"].value("uuid", "");
  ASSERT_FALSE(uuid.empty());
  // The seed is the last disk (vda here: the definition has none), read-only and labelled CIDATA.
  console->type("findfs LABEL=CIDATA; echo label-$?\r");
  EXPECT_TRUE(console->expect("/dev/vda")) << console->output();
  EXPECT_TRUE(console->expect("label-0")) << console->output();
  console->type("cat /sys/block/vda/ro; cat /mnt/vda/meta-data; echo END-META\r");
  EXPECT_TRUE(console->expect("1\r\n")) << console->output();
  EXPECT_TRUE(console->expect("instance-id: \"" + uuid + "\"")) << console->output();
  EXPECT_TRUE(console->expect("local-hostname: \"web-1\"")) << console->output();
  EXPECT_TRUE(console->expect(std::string("- \"") + kKey + "\"")) << console->output();
  EXPECT_TRUE(console->expect("END-META")) << console->output();
  console->type("cat /mnt/vda/user-data; echo END-USER\r");
  EXPECT_TRUE(console->expect("#cloud-config")) << console->output();
  EXPECT_TRUE(console->expect("hostname: \"web-1\"")) << console->output();
  EXPECT_TRUE(console->expect("ssh_authorized_keys:")) << console->output();
  EXPECT_TRUE(console->expect(kKey)) << console->output();
  EXPECT_TRUE(console->expect("END-USER")) << console->output();
  console->type("\x1d");
  EXPECT_EQ(console->wait(), 0);
}

// Given user_data goes in verbatim, after the definition's own disk.
TEST_F(VmBootTest, UserDataIsVerbatimAndTheSeedFollowsTheDisks) {
  const std::string user_data = "#!/bin/sh\necho 'vireo user data' > /tmp/x\n";
  PtyCli* console = nullptr;
  boot("ci2",
       {"--kernel", guest().kernel, "--initrd", guest().initrd, "--cmdline", "console=ttyS0 quiet",
        "--disk", guest().boot_disk + ":ro", "--hostname", "db", "--user-data",
        file("user-data", user_data)},
       console);
  if (HasFatalFailure()) return;
  console->type("findfs LABEL=CIDATA; md5sum /mnt/vdb/user-data\r");
  EXPECT_TRUE(console->expect("/dev/vdb")) << console->output();
  auto md5 = run_process({"md5sum", files_ / "user-data"});
  ASSERT_TRUE(md5 && md5->ok());
  EXPECT_TRUE(console->expect(md5->out.substr(0, 32) + "  /mnt/vdb/user-data"))
      << console->output();
  console->type("grep hostname /mnt/vdb/meta-data\r");
  EXPECT_TRUE(console->expect("local-hostname: \"db\"")) << console->output();
  console->type("\x1d");
  EXPECT_EQ(console->wait(), 0);
}

TEST_F(VmBootTest, BadSeedInputIsRefusedWithOneLineAndNothingCreated) {
  struct Case {
    std::vector<std::string> args;
    std::string error;
  };
  const std::vector<Case> cases = {
      {{"vm", "create", "x1", "--kernel", guest().kernel, "--hostname", "web_1"},
       "cloud_init.hostname must be a DNS label"},
      {{"vm", "create", "x2", "--kernel", guest().kernel, "--ssh-key",
        file("bad.pub", "ssh-rsa this-is-no-key\n")},
       "cloud_init.ssh_authorized_keys[0] is not an OpenSSH public key"},
      {{"vm", "create", "x3", "--kernel", guest().kernel, "--user-data",
        file("big", std::string(64 * 1024 + 1, 'x'))},
       "cloud_init.user_data is 65537 bytes, more than the 64 KiB allowed"},
      {{"vm", "create", "x4", "--kernel", guest().kernel, "--firmware", "coreboot"},
       "field 'firmware' must be bios or uefi"},
  };
  for (const auto& c : cases) {
    auto r = d_.cli(c.args);
    EXPECT_EQ(r.exit_code, 1) << c.args[2];
    EXPECT_NE(r.err.find(c.error), std::string::npos) << c.args[2] << ": " << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
  }
  // An unknown field, which the CLI cannot send, through the API.
  auto client = client::Client::connect({.socket_path = d_.socket()});
  ASSERT_TRUE(client);
  auto r = (*client)->create("vms", Json{{"name", "x5"},
                                         {"kernel", guest().kernel},
                                         {"cloud_init", {{"hostname", "a"}, {"users", "root"}}}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("cloud_init: unknown field 'users' (it has hostname, "
                                     "ssh_authorized_keys, user_data)"),
            std::string::npos)
      << r.error().message();
  EXPECT_EQ(d_.cli({"--format", "json", "vm", "ls"}).out, "[]\n");
}

// No kernel: the firmware boots boot.img's first sector (SYSLINUX), which loads the guest.
TEST_F(VmBootTest, DiskBootsThroughSeaBios) {
  PtyCli* console = nullptr;
  boot("b1", {"--disk", guest().boot_disk + ":ro"}, console);
  if (HasFatalFailure()) return;
  EXPECT_EQ(cli_json(d_, {"vm", "show", "b1"}).value("firmware", ""), "bios");
  console->type("cat /proc/cmdline\r");
  EXPECT_TRUE(console->expect("console=ttyS0")) << console->output();
}

// The same disk under OVMF: \EFI\BOOT\BOOTX64.EFI (syslinux.efi), the VM's own vars copy.
TEST_F(VmBootTest, DiskBootsThroughOvmf) {
  if (!fs::exists("/usr/share/OVMF/OVMF_CODE.fd")) GTEST_SKIP() << "OVMF (ovmf) not installed";
  PtyCli* console = nullptr;
  boot("u1", {"--disk", guest().boot_disk + ":ro", "--firmware", "uefi"}, console);
  if (HasFatalFailure()) return;
  EXPECT_TRUE(fs::exists(d_.root() / "vms" / "u1" / "OVMF_VARS.fd"));
  console->type("ls /sys/firmware/efi >/dev/null && echo efi-$((40+2))\r");
  EXPECT_TRUE(console->expect("efi-42")) << console->output();
  auto refused = d_.cli({"vm", "create", "u2", "--kernel", guest().kernel, "--machine", "microvm",
                         "--firmware", "uefi"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("firmware uefi needs machine q35"), std::string::npos) << refused.err;
}

}  // namespace
}  // namespace vireo::testing
