#include "daemon/vm_firmware.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "base/file.h"

namespace vireo::daemon {
namespace {

namespace fs = std::filesystem;

class FirmwareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vireo-firmware-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ovmf_ = dir_ / "OVMF";
    fs::create_directories(ovmf_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void install_ovmf() {
    ASSERT_TRUE(write_file_atomic(ovmf_ / "OVMF_CODE.fd", "code", 0644));
    ASSERT_TRUE(write_file_atomic(ovmf_ / "OVMF_VARS.fd", "vars", 0644));
  }
  std::string message(const Json& spec, const std::string& machine = "q35") {
    auto r = validate_firmware(spec, machine, ovmf_);
    return r ? *r : r.error().message();
  }

  fs::path dir_, ovmf_;
};

TEST_F(FirmwareTest, BiosIsTheDefaultAndUefiNeedsOvmf) {
  EXPECT_EQ(message(Json::object()), "bios");
  EXPECT_EQ(message(Json{{"firmware", "bios"}}, "microvm"), "bios");
  EXPECT_EQ(message(Json{{"firmware", "efi"}}), "field 'firmware' must be bios or uefi");
  EXPECT_EQ(message(Json{{"firmware", 1}}), "field 'firmware' must be bios or uefi");
  EXPECT_EQ(message(Json{{"firmware", "uefi"}}),
            fmt::format("firmware uefi needs OVMF, which is not installed (no {}/OVMF_CODE.fd; "
                        "install the ovmf package)",
                        ovmf_.string()));
  install_ovmf();
  EXPECT_EQ(message(Json{{"firmware", "uefi"}}), "uefi");
  EXPECT_EQ(message(Json{{"firmware", "uefi"}}, "microvm"), "firmware uefi needs machine q35");
}

TEST_F(FirmwareTest, EachVmKeepsItsOwnVarsCopy) {
  compute::VmSpec spec{.name = "vm1"};
  EXPECT_FALSE(use_uefi(spec, dir_ / "run", ovmf_));
  install_ovmf();
  ASSERT_TRUE(use_uefi(spec, dir_ / "run", ovmf_));
  EXPECT_EQ(spec.uefi_code, (ovmf_ / "OVMF_CODE.fd").string());
  EXPECT_EQ(spec.uefi_vars, (dir_ / "run" / "OVMF_VARS.fd").string());
  EXPECT_EQ(*read_file(spec.uefi_vars), "vars");
  // What the guest wrote survives the next start.
  ASSERT_TRUE(write_file_atomic(spec.uefi_vars, "changed", 0600));
  ASSERT_TRUE(use_uefi(spec, dir_ / "run", ovmf_));
  EXPECT_EQ(*read_file(spec.uefi_vars), "changed");
}

}  // namespace
}  // namespace vireo::daemon
