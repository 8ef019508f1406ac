#pragma once
// Pieces of a VM definition that the VM routes share (src/daemon/vms.cc, vm_devices.cc):
// checking one disk or NIC, and the names derived from a VM's name and a NIC's place.
#include <string>
#include <utility>

#include "base/json.h"
#include "base/result.h"
#include "store/store.h"

namespace vireo::daemon {

// "POOL/VOL" → {pool, vol}, both valid names.
[[nodiscard]] Result<std::pair<std::string, std::string>> split_volume(const std::string& text);
// One entry of "disks" / "nics", normalized ({"path"|"volume", "format", "readonly"} /
// {"network"[, "mac"]}); index only names it in errors.
[[nodiscard]] Result<Json> validate_disk(const Json& disk, size_t index);
[[nodiscard]] Result<Json> validate_nic(const Json& nic, size_t index);
// The TAP of a VM's NIC number n: at most 15 characters, stable for (state root, VM name, n).
std::string tap_name(const std::filesystem::path& root, const std::string& vm, size_t n);
std::string nic_mac(const std::string& uuid, const Json& nic, size_t index);
// How devices.json names the NIC with that MAC (vm_devices.cc).
std::string nic_key(const std::string& mac);
// A stable UUID for one VM definition: the same name recreated later gets a new one.
std::string vm_uuid(const store::ObjectRow& row);

}  // namespace vireo::daemon
