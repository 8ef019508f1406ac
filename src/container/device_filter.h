#pragma once
// The cgroup v2 device controller: cgroup v2 has no devices.allow file, so access to device
// nodes is decided by an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) attached to the container's
// cgroup. The program evaluates linux.resources.devices with the same meaning as the v1 list:
// rules in order, the last one that matches decides, and no match denies.
#include <linux/bpf.h>

#include <string>
#include <vector>

#include "base/result.h"
#include "container/config.h"

namespace vireo::container {

// The program's instructions for rules (pure; exposed for tests).
std::vector<bpf_insn> device_filter_program(const std::vector<DeviceRule>& rules);

// Loads the program for rules and attaches it to the cgroup v2 directory, replacing the
// programs an earlier create or update attached there.
[[nodiscard]] Result<void> attach_device_filter(const std::string& cgroup_dir,
                                                const std::vector<DeviceRule>& rules);

}  // namespace vireo::container
