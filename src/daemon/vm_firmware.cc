#include "daemon/vm_firmware.h"

#include "base/file.h"

namespace vireo::daemon {

namespace fs = std::filesystem;

std::optional<OvmfFiles> find_ovmf(const fs::path& dir) {
  // Debian 12: the 2 MiB build and the 4 MiB one; code and vars must come from the same build.
  for (auto [code, vars] :
       {std::pair{"OVMF_CODE.fd", "OVMF_VARS.fd"}, std::pair{"OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"}})
    if (fs::is_regular_file(dir / code) && fs::is_regular_file(dir / vars))
      return OvmfFiles{dir / code, dir / vars};
  return std::nullopt;
}

Result<std::string> validate_firmware(const Json& spec, const std::string& machine,
                                      const fs::path& ovmf_dir) {
  if (!spec.contains("firmware")) return std::string("bios");
  const Json& value = spec["firmware"];
  if (!value.is_string() || (value != "bios" && value != "uefi"))
    return make_error(ErrorCode::kInvalidArgument, "field 'firmware' must be bios or uefi");
  if (value == "bios") return std::string("bios");
  if (machine != "q35")
    return make_error(ErrorCode::kInvalidArgument, "firmware uefi needs machine q35");
  if (!find_ovmf(ovmf_dir))
    return make_error(ErrorCode::kUnavailable,
                      "firmware uefi needs OVMF, which is not installed (no {}/OVMF_CODE.fd; "
                      "install the ovmf package)",
                      ovmf_dir.string());
  return std::string("uefi");
}

Result<void> use_uefi(compute::VmSpec& spec, const fs::path& run_dir, const fs::path& ovmf_dir) {
  auto ovmf = find_ovmf(ovmf_dir);
  if (!ovmf)
    return make_error(ErrorCode::kUnavailable,
                      "VM {}: firmware uefi needs OVMF, which is not installed (no {}/"
                      "OVMF_CODE.fd)",
                      spec.name, ovmf_dir.string());
  TRY(make_dirs(run_dir, 0700));
  const fs::path vars = run_dir / "OVMF_VARS.fd";
  if (!fs::exists(vars)) {
    auto data = TRY(read_file(ovmf->vars));
    TRY(write_file_atomic(vars, data, 0600));
  }
  spec.uefi_code = ovmf->code.string();
  spec.uefi_vars = vars.string();
  return {};
}

}  // namespace vireo::daemon
