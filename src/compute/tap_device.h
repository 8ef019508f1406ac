#pragma once
// Persistent TAP devices for VM NICs: created (and brought up) before QEMU starts, opened by
// QEMU by name, attached to a Vireo network by the network layer, deleted when the VM stops.
// Persistent so that they, like the VM, outlive the daemon.
#include <string>

#include "base/result.h"

namespace vireo::compute {

// Creates TAP device name (no-op when it exists) and sets it up.
[[nodiscard]] Result<void> create_tap(const std::string& name);
// Deletes it; a missing device is fine.
void delete_tap(const std::string& name);

}  // namespace vireo::compute
