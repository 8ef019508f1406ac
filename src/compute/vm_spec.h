#pragma once
// VmSpec: the typed definition of one VM as the compute library needs it to run QEMU. The daemon
// maps its stored VM objects (volumes, networks) onto this: disks are already resolved to files
// or NBD exports, NICs to TAP devices. Plain data, no behaviour beyond validation.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vireo::compute {

enum class Machine { kQ35, kMicrovm };
enum class Accelerator { kKvm, kTcg };
enum class DiskFormat { kRaw, kQcow2 };
enum class Access { kReadWrite, kReadOnly };

struct DiskSpec {
  // Exactly one of path (an image file or block device) and nbd_uri
  // (nbd+unix:///EXPORT?socket=PATH or nbd://HOST:PORT/EXPORT) is set.
  std::string path;
  std::string nbd_uri;
  DiskFormat format = DiskFormat::kRaw;  // format of the data in the file or export
  Access access = Access::kReadWrite;
};

struct NicSpec {
  std::string tap;  // host TAP interface, created and attached by the network layer
  std::string mac;  // "52:54:00:xx:xx:xx"; stable_mac() derives one from the VM uuid
};

struct VmSpec {
  std::string name;
  std::string uuid;  // empty: QEMU picks none
  int vcpus = 1;
  uint64_t memory_mib = 256;
  Machine machine = Machine::kQ35;
  Accelerator accelerator = Accelerator::kTcg;
  std::string cpu_model;  // empty: "host" under KVM, QEMU's default under TCG
  // Direct kernel boot when kernel is set; otherwise firmware boots the first disk.
  std::string kernel;
  std::string initrd;
  std::string cmdline;
  // UEFI: OVMF's code (read-only) and this VM's own copy of its variable store, both set or both
  // empty (then the machine's default firmware, SeaBIOS on q35). q35 only.
  std::string uefi_code;
  std::string uefi_vars;
  std::vector<DiskSpec> disks;
  std::vector<NicSpec> nics;
};

inline constexpr int kMaxVcpus = 128;
inline constexpr uint64_t kMinMemoryMib = 32;
inline constexpr uint64_t kMaxMemoryMib = 1024 * 1024;
inline constexpr size_t kMaxDevices = 20;  // disks + NICs

// Checks everything that can be checked before QEMU starts (ranges, files, kernel header,
// duplicates), so a bad spec fails with one clear kInvalidArgument/kNotFound line.
[[nodiscard]] Result<void> validate_spec(const VmSpec& spec);

// Checks that path holds a Linux x86 boot image (bzImage "HdrS" setup header).
[[nodiscard]] Result<void> check_kernel_image(const std::string& path);

// A locally administered unicast MAC from QEMU's 52:54:00 range, stable for (uuid, index).
std::string stable_mac(std::string_view vm_uuid, int index);
// "xx:xx:xx:xx:xx:xx" in hex, not multicast.
bool valid_unicast_mac(std::string_view mac);

std::string_view to_string(Machine machine);
std::string_view to_string(Accelerator accelerator);
std::string_view to_string(DiskFormat format);

}  // namespace vireo::compute
