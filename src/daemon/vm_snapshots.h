#pragma once
// VM snapshots (the VmManager members are in vm_snapshots.cc): the pure parts, exposed for
// tests. A snapshot lives in <run dir>/snapshots/SNAP: meta.json (what was saved, see
// docs/vms.md), copies of image-file disks, and the memory state when it was taken with one.
// A volume disk's snapshot is a read-only volume of the same pool, named by
// snapshot_volume_name().
#include <string>

#include "base/result.h"

namespace vireo::daemon {

// "VOL.vmsnap.SNAP": kInvalidArgument when that passes the 63-character limit of volume names.
[[nodiscard]] Result<std::string> snapshot_volume_name(const std::string& volume,
                                                       const std::string& snapshot);

}  // namespace vireo::daemon
