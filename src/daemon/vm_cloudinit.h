#pragma once
// The cloud-init NoCloud seed of a VM: a definition's "cloud_init" field
// ({"hostname", "ssh_authorized_keys", "user_data"}, all optional) checked, turned into the
// seed's meta-data and user-data, and written as a small FAT image labelled CIDATA that vireod
// attaches read-only after the definition's disks at each start. Content generation is pure
// (unit-tested); only write_cloud_init_seed() touches the file system and runs mkfs.vfat and
// mcopy (mtools), so no mount is needed. Stateless, thread-safe.
#include <filesystem>
#include <string>
#include <string_view>

#include "base/json.h"
#include "base/result.h"
#include "compute/vm_spec.h"

namespace vireo::daemon {

inline constexpr size_t kMaxUserDataBytes = 64 * 1024;
inline constexpr size_t kMaxSshKeys = 64;

// Checks and normalizes the "cloud_init" field: only the keys that were given, each valid
// (hostname a DNS label, keys OpenSSH public keys, user_data at most 64 KiB).
[[nodiscard]] Result<Json> validate_cloud_init(const Json& value);

struct CloudInitSeed {
  std::string meta_data;
  std::string user_data;
};

// meta-data holds instance-id (the VM's uuid), local-hostname and public-keys; user-data is the
// given user_data verbatim, else a #cloud-config with hostname and ssh_authorized_keys.
CloudInitSeed cloud_init_seed(const Json& cloud_init, std::string_view instance_id);

// value as a YAML double-quoted scalar: safe whatever it holds.
std::string yaml_quote(std::string_view value);

// Writes dir/cloud-init.img (FAT, label CIDATA, meta-data + user-data) and returns it as a
// read-only raw disk.
[[nodiscard]] Result<compute::DiskSpec> write_cloud_init_seed(const CloudInitSeed& seed,
                                                              const std::filesystem::path& dir);

}  // namespace vireo::daemon
