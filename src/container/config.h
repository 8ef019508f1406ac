#pragma once
// Typed form of an OCI runtime bundle's config.json (runtime spec 1.2, Linux). load_config() reads
// and validates the whole file before anything is created, so a bad bundle fails with one line
// that names the field ("config.json: linux.namespaces[2]: duplicate namespace type \"pid\"")
// and leaves nothing behind. Plain data; no thread-safety concerns.
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace vireo::container {

enum class NamespaceType { kPid, kNetwork, kMount, kIpc, kUts, kUser, kCgroup, kTime };

std::string_view to_string(NamespaceType type);
// The CLONE_NEW* flag of a namespace type.
int clone_flag(NamespaceType type);

struct Namespace {
  NamespaceType type;
  std::string path;  // empty: create a new one; else join the namespace at this path
};

struct IdMapping {
  uint32_t container_id = 0;
  uint32_t host_id = 0;
  uint32_t size = 0;
};

struct Mount {
  std::string destination;
  std::string type;
  std::string source;
  std::vector<std::string> options;
};

struct Rlimit {
  int resource = 0;
  std::string name;
  uint64_t soft = 0;
  uint64_t hard = 0;
};

// Capability numbers per set; names unknown to this build are dropped with a warning.
struct Capabilities {
  std::vector<int> bounding, effective, inheritable, permitted, ambient;
};

struct User {
  uid_t uid = 0;
  gid_t gid = 0;
  std::optional<mode_t> umask;
  std::vector<gid_t> additional_gids;
};

struct Process {
  bool terminal = false;
  unsigned short console_height = 0, console_width = 0;
  User user;
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::string cwd;
  std::optional<Capabilities> capabilities;
  std::vector<Rlimit> rlimits;
  bool no_new_privileges = false;
  std::optional<int> oom_score_adj;
};

struct Device {
  std::string path;
  char type = 'c';  // c, b, u or p
  int64_t major = 0, minor = 0;
  std::optional<uint32_t> file_mode;
  std::optional<uint32_t> uid, gid;
};

struct DeviceRule {
  bool allow = false;
  char type = 'a';  // a, c or b
  std::optional<int64_t> major, minor;
  std::string access;  // some of "rwm"
};

// A per-device blockIO entry: a weight or a throttle rate for major:minor.
struct BlockDeviceValue {
  int64_t major = 0, minor = 0;
  uint64_t value = 0;
};

struct Resources {
  std::optional<int64_t> memory_limit, memory_reservation, memory_swap;
  std::optional<uint64_t> memory_swappiness;
  std::optional<bool> disable_oom_killer;
  std::optional<uint64_t> cpu_shares, cpu_period;
  std::optional<int64_t> cpu_quota;
  std::optional<uint64_t> cpu_burst;
  std::string cpuset_cpus, cpuset_mems;
  std::optional<int64_t> pids_limit;
  std::optional<uint16_t> blkio_weight;
  std::vector<BlockDeviceValue> blkio_weight_device;
  // Keyed by the v1 file suffix: read_bps_device, write_bps_device, read_iops_device, ...
  std::map<std::string, std::vector<BlockDeviceValue>> blkio_throttle;
  std::map<std::string, uint64_t> hugepage_limits;  // page size ("2MB") → bytes
  std::vector<DeviceRule> devices;
  std::map<std::string, std::string> unified;
};

struct SeccompArg {
  uint32_t index = 0;
  uint64_t value = 0, value_two = 0;
  std::string op;
};

struct SeccompRule {
  std::vector<std::string> names;
  std::string action;
  std::optional<uint32_t> errno_ret;
  std::vector<SeccompArg> args;
};

struct Seccomp {
  std::string default_action;
  std::optional<uint32_t> default_errno_ret;
  std::vector<std::string> architectures;
  std::vector<std::string> flags;
  std::string listener_path;
  std::string listener_metadata;
  std::vector<SeccompRule> syscalls;
};

struct Hook {
  std::string path;
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::optional<int> timeout;  // seconds
};

struct Hooks {
  std::vector<Hook> prestart, create_runtime, create_container, start_container, poststart,
      poststop;
};

struct TimeOffset {
  int64_t secs = 0;
  uint32_t nanosecs = 0;
};

struct Linux {
  std::vector<Namespace> namespaces;
  std::vector<IdMapping> uid_mappings, gid_mappings;
  std::map<std::string, TimeOffset> time_offsets;  // by clock: monotonic, boottime
  std::vector<Device> devices;
  std::string cgroups_path;
  std::optional<Resources> resources;
  std::string rootfs_propagation;
  std::optional<Seccomp> seccomp;
  std::map<std::string, std::string> sysctl;
  std::vector<std::string> masked_paths, readonly_paths;
  std::optional<unsigned long> personality;

  bool has_namespace(NamespaceType type) const;
  const Namespace* find_namespace(NamespaceType type) const;
};

struct Config {
  std::string oci_version;
  std::filesystem::path rootfs;  // absolute
  bool root_readonly = false;
  std::optional<Process> process;
  std::string hostname, domainname;
  std::vector<Mount> mounts;
  Hooks hooks;
  std::map<std::string, std::string> annotations;
  Linux linux;
};

// Parses config text. Relative root.path is resolved against bundle. Unknown fields are
// ignored (the spec allows extensions) and reported in warnings. Does not touch the disk.
[[nodiscard]] Result<Config> parse_config(std::string_view text,
                                          const std::filesystem::path& bundle,
                                          std::vector<std::string>* warnings = nullptr);

// Reads bundle/config.json, parses it and checks that the rootfs directory exists.
[[nodiscard]] Result<Config> load_config(const std::filesystem::path& bundle,
                                         std::vector<std::string>* warnings = nullptr);

// Capability name ("CAP_SYS_ADMIN") to number, or -1.
int capability_from_name(std::string_view name);
std::string capability_name(int cap);
int last_known_capability();

}  // namespace vireo::container
