#pragma once
// Disk and NIC hot-plug and hot-unplug of a running q35 VM over QMP. A plugged device goes on a
// free spare PCIe root port (hp0, hp1, ...: see qemu_command.h); any virtio device of the VM can
// be unplugged, since each sits on a root port of its own. microvm (virtio-mmio) has no hot-plug.
// The TAP of a NIC is the caller's to create before plug_nic and to delete after unplug_nic.
#include <chrono>
#include <string>

#include "base/json.h"
#include "base/result.h"
#include "compute/vm_process.h"
#include "compute/vm_spec.h"

namespace vireo::compute {

inline constexpr std::chrono::seconds kUnplugTimeout{30};

// The first spare root port with nothing on it; kConflict when all are taken.
[[nodiscard]] Result<std::string> free_hotplug_port(QmpClient& qmp);
// The port's name from query-pci's answer (separate for the unit tests).
[[nodiscard]] Result<std::string> free_hotplug_port_in(const Json& query_pci);

// blockdev-add of the disk's nodes, device_add on a free port; nothing left on failure.
[[nodiscard]] Result<void> plug_disk(VmProcess& vm, const DiskSpec& disk, const std::string& id);
// device_del (waits for the guest), then blockdev-del of the nodes.
[[nodiscard]] Result<void> unplug_disk(VmProcess& vm, const std::string& id,
                                       std::chrono::milliseconds timeout = kUnplugTimeout);
[[nodiscard]] Result<void> plug_nic(VmProcess& vm, const NicSpec& nic, const std::string& id);
[[nodiscard]] Result<void> unplug_nic(VmProcess& vm, const std::string& id,
                                      std::chrono::milliseconds timeout = kUnplugTimeout);

}  // namespace vireo::compute
