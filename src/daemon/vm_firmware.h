#pragma once
// A VM's firmware: "bios" (the machine's default, SeaBIOS on q35) or "uefi" (OVMF, from the
// ovmf package). A UEFI VM runs OVMF's code read-only and keeps its own copy of the variable
// store in its run directory, made at its first start and kept across starts (boot entries
// the guest writes survive). Stateless, thread-safe.
#include <filesystem>
#include <optional>
#include <string>

#include "base/json.h"
#include "base/result.h"
#include "compute/vm_spec.h"

namespace vireo::daemon {

inline constexpr const char* kOvmfDir = "/usr/share/OVMF";

struct OvmfFiles {
  std::filesystem::path code;
  std::filesystem::path vars;  // the template each VM copies
};

// OVMF's code and vars template under dir (Debian's names), or nullopt when not installed.
std::optional<OvmfFiles> find_ovmf(const std::filesystem::path& dir = kOvmfDir);

// The definition's "firmware" ("bios" when absent); "uefi" needs machine q35 and OVMF.
[[nodiscard]] Result<std::string> validate_firmware(
    const Json& spec, const std::string& machine, const std::filesystem::path& ovmf_dir = kOvmfDir);

// Points spec at OVMF, copying the vars template to run_dir/OVMF_VARS.fd if not there yet.
[[nodiscard]] Result<void> use_uefi(compute::VmSpec& spec, const std::filesystem::path& run_dir,
                                    const std::filesystem::path& ovmf_dir = kOvmfDir);

}  // namespace vireo::daemon
