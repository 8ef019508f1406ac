#include "compute/vm_spec.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <array>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <set>

#include "base/fd.h"
#include "base/ids.h"
#include "base/strings.h"

namespace vireo::compute {

namespace {

// Linux x86 boot protocol: the setup header carries 0xAA55 at 0x1FE and "HdrS" at 0x202.
constexpr size_t kBootFlagOffset = 0x1fe;
constexpr size_t kHeaderMagicOffset = 0x202;

Result<void> check_file(const std::string& path, std::string_view what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno_error(fmt::format("{} {}", what, path));
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return make_error(ErrorCode::kInvalidArgument, "{} {}: not a regular file or block device",
                      what, path);
  if (::access(path.c_str(), R_OK) != 0) return errno_error(fmt::format("{} {}", what, path));
  return {};
}

bool valid_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

bool valid_mac(std::string_view mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    bool colon = i % 3 == 2;
    if (colon ? mac[i] != ':' : !std::isxdigit(static_cast<unsigned char>(mac[i]))) return false;
  }
  // The low bit of the first octet marks multicast, which a NIC address must not be.
  int first = std::stoi(std::string(mac.substr(0, 2)), nullptr, 16);
  return (first & 1) == 0;
}

bool valid_ifname(std::string_view name) {
  if (name.empty() || name.size() > 15) return false;
  for (char c : name)
    if (c == '/' || c == ':' || c == ',' || std::isspace(static_cast<unsigned char>(c)))
      return false;
  return true;
}

Result<void> validate_sizes(const VmSpec& spec) {
  if (spec.vcpus < 1 || spec.vcpus > kMaxVcpus)
    return make_error(ErrorCode::kInvalidArgument, "vcpus {} out of range 1-{}", spec.vcpus,
                      kMaxVcpus);
  if (spec.memory_mib < kMinMemoryMib || spec.memory_mib > kMaxMemoryMib)
    return make_error(ErrorCode::kInvalidArgument, "memory {} MiB out of range {}-{} MiB",
                      spec.memory_mib, kMinMemoryMib, kMaxMemoryMib);
  return {};
}

Result<void> validate_boot(const VmSpec& spec) {
  if (spec.uefi_code.empty() != spec.uefi_vars.empty())
    return make_error(ErrorCode::kInvalidArgument, "UEFI needs both the code and the vars file");
  if (!spec.uefi_code.empty()) {
    if (spec.machine != Machine::kQ35)
      return make_error(ErrorCode::kInvalidArgument, "UEFI firmware needs machine q35");
    TRY(check_file(spec.uefi_code, "UEFI code"));
    TRY(check_file(spec.uefi_vars, "UEFI vars"));
  }
  if (spec.kernel.empty()) {
    if (!spec.initrd.empty() || !spec.cmdline.empty())
      return make_error(ErrorCode::kInvalidArgument, "initrd or cmdline given without a kernel");
    if (spec.machine == Machine::kMicrovm)
      return make_error(ErrorCode::kInvalidArgument, "machine microvm needs a kernel to boot");
    if (spec.disks.empty())
      return make_error(ErrorCode::kInvalidArgument, "nothing to boot: no kernel and no disk");
    return {};
  }
  TRY(check_kernel_image(spec.kernel));
  if (!spec.initrd.empty()) TRY(check_file(spec.initrd, "initrd"));
  return {};
}

Result<void> validate_disks(const std::vector<DiskSpec>& disks) {
  std::set<std::string> seen;
  for (size_t i = 0; i < disks.size(); ++i) {
    const auto& d = disks[i];
    auto what = fmt::format("disk {}", i);
    if (d.path.empty() == d.nbd_uri.empty())
      return make_error(ErrorCode::kInvalidArgument, "{}: set exactly one of path and nbd_uri",
                        what);
    std::string key = d.nbd_uri;
    if (!d.path.empty()) {
      TRY(check_file(d.path, what));
      std::error_code ec;
      key = std::filesystem::weakly_canonical(d.path, ec).string();
    } else if (!d.nbd_uri.starts_with("nbd+unix:///") && !d.nbd_uri.starts_with("nbd://")) {
      return make_error(ErrorCode::kInvalidArgument, "{}: unsupported NBD URI {}", what, d.nbd_uri);
    }
    if (!seen.insert(key).second)
      return make_error(ErrorCode::kInvalidArgument, "{}: {} is attached twice", what,
                        d.path.empty() ? d.nbd_uri : d.path);
  }
  return {};
}

Result<void> validate_nics(const std::vector<NicSpec>& nics) {
  std::set<std::string> taps, macs;
  for (size_t i = 0; i < nics.size(); ++i) {
    const auto& n = nics[i];
    if (!valid_ifname(n.tap))
      return make_error(ErrorCode::kInvalidArgument, "nic {}: invalid TAP name '{}'", i, n.tap);
    if (!valid_mac(n.mac))
      return make_error(ErrorCode::kInvalidArgument, "nic {}: invalid unicast MAC '{}'", i, n.mac);
    if (!taps.insert(n.tap).second || !macs.insert(n.mac).second)
      return make_error(ErrorCode::kInvalidArgument, "nic {}: TAP {} or MAC {} used twice", i,
                        n.tap, n.mac);
  }
  return {};
}

}  // namespace

Result<void> check_kernel_image(const std::string& path) {
  TRY(check_file(path, "kernel"));
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("kernel {}", path));
  std::array<unsigned char, kHeaderMagicOffset + 4> header{};
  ssize_t n = ::pread(fd.get(), header.data(), header.size(), 0);
  if (n < 0) return errno_error(fmt::format("kernel {}: read", path));
  bool ok = static_cast<size_t>(n) == header.size() && header[kBootFlagOffset] == 0x55 &&
            header[kBootFlagOffset + 1] == 0xaa &&
            std::memcmp(&header[kHeaderMagicOffset], "HdrS", 4) == 0;
  if (!ok)
    return make_error(ErrorCode::kInvalidArgument,
                      "kernel {}: not a Linux x86 kernel image (no bzImage 'HdrS' header)", path);
  return {};
}

Result<void> validate_spec(const VmSpec& spec) {
  TRY(validate_name(spec.name, "VM name"));
  if (!spec.uuid.empty() && !valid_uuid(spec.uuid))
    return make_error(ErrorCode::kInvalidArgument, "invalid uuid '{}'", spec.uuid);
  TRY(validate_sizes(spec));
  TRY(validate_boot(spec));
  TRY(validate_disks(spec.disks));
  TRY(validate_nics(spec.nics));
  // Each device takes a PCIe root port in one of pcie.0's 32 slots, besides the spare ones.
  if (spec.disks.size() + spec.nics.size() > kMaxDevices)
    return make_error(ErrorCode::kInvalidArgument, "{} disks and NICs: at most {} in all",
                      spec.disks.size() + spec.nics.size(), kMaxDevices);
  return {};
}

bool valid_unicast_mac(std::string_view mac) {
  return valid_mac(mac);
}

std::string stable_mac(std::string_view vm_uuid, int index) {
  std::string digest = sha256_hex(fmt::format("{}/nic/{}", vm_uuid, index));
  return fmt::format("52:54:00:{}:{}:{}", digest.substr(0, 2), digest.substr(2, 2),
                     digest.substr(4, 2));
}

std::string_view to_string(Machine machine) {
  return machine == Machine::kQ35 ? "q35" : "microvm";
}

std::string_view to_string(Accelerator accelerator) {
  return accelerator == Accelerator::kKvm ? "kvm" : "tcg";
}

std::string_view to_string(DiskFormat format) {
  return format == DiskFormat::kRaw ? "raw" : "qcow2";
}

}  // namespace vireo::compute
