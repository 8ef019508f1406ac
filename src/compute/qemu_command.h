#pragma once
// The QEMU command line for a VmSpec. Builds argv, starts nothing; the one host fact it reads
// is the TSC rate (host_tsc_khz), for microvm guests under TCG.
//
// Every VM runs with -nodefaults -no-user-config -display none and a seccomp sandbox that also
// denies spawning processes. QEMU is not told to -daemonize: the VmProcess runner forks it into
// its own session, so it survives the daemon, while the daemon that started it can still reap
// it and learn its exit status. The pidfile and the QMP socket let a later daemon re-attach.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "compute/vm_spec.h"

namespace vireo::compute {

// Where QEMU puts its control sockets and files (normally all inside one per-VM run directory).
struct QemuPaths {
  std::string qmp_socket;
  std::string console_socket;  // the guest's serial port, a unix socket QEMU listens on
  std::string pidfile;
};

// Validates spec (validate_spec) and the paths, then returns argv with argv[0] = qemu_binary.
[[nodiscard]] Result<std::vector<std::string>> build_qemu_command(
    const VmSpec& spec, const QemuPaths& paths,
    const std::string& qemu_binary = "qemu-system-x86_64");

// The host's TSC rate in kHz, measured once per process (about 20 ms, against
// CLOCK_MONOTONIC_RAW) and then cached; thread-safe. 0 when it cannot be measured (not x86).
// Under TCG the guest's TSC is the host's, unscaled, so this is also the guest's TSC rate.
uint64_t host_tsc_khz();

// The QEMU device and node names of disk i and NIC i (used again for hot-unplug).
std::string disk_id(size_t index);
std::string nic_id(size_t index);

// Spare PCIe root ports on q35 for hot-plugged devices: hp0, hp1, ...
inline constexpr int kHotplugPorts = 4;
inline constexpr const char* kHotplugPortPrefix = "hp";

// "virtio-blk-pci" on q35, "virtio-blk-device" (virtio-mmio) on microvm; kind "blk" or "net".
std::string virtio_driver(Machine machine, std::string_view kind);
// The -blockdev / blockdev-add nodes of a disk whose device id is id: "<id>-proto" (file or
// nbd) and "<id>-fmt" (raw or qcow2) on top of it.
[[nodiscard]] Result<Json> disk_protocol_node(const DiskSpec& disk, const std::string& id);
Json disk_format_node(const DiskSpec& disk, const std::string& id);

}  // namespace vireo::compute
