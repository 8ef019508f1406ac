// Writing linux.resources into cgroup v1 and v2 control files.
#include <fcntl.h>
#include <unistd.h>

#include "base/fd.h"
#include "base/log.h"
#include "container/cgroup.h"
#include "container/cgroup_files.h"
#include "container/device_filter.h"

namespace vireo::container {

namespace {

namespace fs = std::filesystem;

std::string device_rule_text(const DeviceRule& d) {
  auto num = [](const std::optional<int64_t>& v) {
    return v && *v >= 0 ? std::to_string(*v) : std::string("*");
  };
  if (d.type == 'a') return "a";
  return fmt::format("{} {}:{} {}", d.type, num(d.major), num(d.minor), d.access);
}

// Devices every container needs (null, zero, full, random, urandom, tty, console, ptmx, pts)
// plus mknod of anything, as runc allows by default.
const std::vector<DeviceRule>& default_device_rules() {
  static const std::vector<DeviceRule> rules = {
      {true, 'c', std::nullopt, std::nullopt, "m"},
      {true, 'b', std::nullopt, std::nullopt, "m"},
      {true, 'c', 1, 3, "rwm"},
      {true, 'c', 1, 5, "rwm"},
      {true, 'c', 1, 7, "rwm"},
      {true, 'c', 1, 8, "rwm"},
      {true, 'c', 1, 9, "rwm"},
      {true, 'c', 5, 0, "rwm"},
      {true, 'c', 5, 1, "rwm"},
      {true, 'c', 5, 2, "rwm"},
      {true, 'c', 136, std::nullopt, "rwm"},
  };
  return rules;
}

// The container's rules followed by the devices every container needs.
std::vector<DeviceRule> effective_device_rules(const std::vector<DeviceRule>& rules) {
  std::vector<DeviceRule> out = rules;
  out.insert(out.end(), default_device_rules().begin(), default_device_rules().end());
  return out;
}

Result<void> apply_v1_devices(const std::string& dir, const std::vector<DeviceRule>& rules) {
  if (dir.empty() || rules.empty()) return {};
  for (const auto& rule : effective_device_rules(rules))
    TRY(write_cgroup_file(dir, rule.allow ? "devices.allow" : "devices.deny",
                          device_rule_text(rule)));
  return {};
}

Result<void> apply_v2_devices(const std::string& dir, const std::vector<DeviceRule>& rules) {
  if (dir.empty() || rules.empty()) return {};
  return attach_device_filter(dir, effective_device_rules(rules));
}

// hugetlb.<size>.<suffix>; hosts without the hugetlb controller are skipped as runc does.
Result<void> apply_hugepages(const std::string& dir, const std::map<std::string, uint64_t>& limits,
                             const char* suffix) {
  for (const auto& [size, limit] : limits) {
    std::string file = fmt::format("hugetlb.{}.{}", size, suffix);
    if (dir.empty() || !fs::exists(fs::path(dir) / file)) {
      spdlog::warn("linux.resources.hugepageLimits: no {} on this host, limit not applied", file);
      continue;
    }
    TRY(write_cgroup_file(dir, file, std::to_string(limit)));
  }
  return {};
}

// v2 io.max takes all four limits of a device in one line: "8:0 rbps=1048576 wiops=100".
Result<void> apply_io_max(const std::string& dir,
                          const std::map<std::string, std::vector<BlockDeviceValue>>& throttle) {
  static const std::map<std::string, std::string> kKeys = {{"read_bps_device", "rbps"},
                                                           {"write_bps_device", "wbps"},
                                                           {"read_iops_device", "riops"},
                                                           {"write_iops_device", "wiops"}};
  std::map<std::pair<int64_t, int64_t>, std::string> lines;
  for (const auto& [file, devices] : throttle)
    for (const auto& d : devices)
      lines[{d.major, d.minor}] += fmt::format(" {}={}", kKeys.at(file), d.value);
  for (const auto& [dev, limits] : lines)
    TRY(write_cgroup_file(dir, "io.max", fmt::format("{}:{}{}", dev.first, dev.second, limits)));
  return {};
}

}  // namespace

Result<void> write_cgroup_file(const fs::path& dir, const std::string& file,
                               const std::string& value) {
  fs::path path = dir / file;
  Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("open {}", path.string()));
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
    return errno_error(fmt::format("write \"{}\" to {}", value, path.string()));
  return {};
}

uint64_t cpu_shares_to_weight(uint64_t shares) {
  if (shares == 0) return 0;
  shares = std::clamp<uint64_t>(shares, 2, 262144);
  return 1 + ((shares - 2) * 9999) / 262142;
}

uint64_t blkio_weight_to_io_weight(uint64_t weight) {
  if (weight == 0) return 0;
  weight = std::clamp<uint64_t>(weight, 10, 1000);
  return 1 + ((weight - 10) * 9999) / 990;
}

Result<void> Cgroup::apply_v1(const Resources& r) {
  if (std::string mem = path_of("memory"); !mem.empty()) {
    if (r.memory_limit)
      TRY(write_cgroup_file(mem, "memory.limit_in_bytes", std::to_string(*r.memory_limit)));
    if (r.memory_reservation)
      TRY(write_cgroup_file(mem, "memory.soft_limit_in_bytes",
                            std::to_string(*r.memory_reservation)));
    if (r.memory_swap && fs::exists(fs::path(mem) / "memory.memsw.limit_in_bytes"))
      TRY(write_cgroup_file(mem, "memory.memsw.limit_in_bytes", std::to_string(*r.memory_swap)));
    if (r.memory_swappiness)
      TRY(write_cgroup_file(mem, "memory.swappiness", std::to_string(*r.memory_swappiness)));
    if (r.disable_oom_killer && *r.disable_oom_killer)
      TRY(write_cgroup_file(mem, "memory.oom_control", "1"));
  }
  if (std::string cpu = path_of("cpu"); !cpu.empty()) {
    if (r.cpu_shares) TRY(write_cgroup_file(cpu, "cpu.shares", std::to_string(*r.cpu_shares)));
    if (r.cpu_period)
      TRY(write_cgroup_file(cpu, "cpu.cfs_period_us", std::to_string(*r.cpu_period)));
    if (r.cpu_quota) TRY(write_cgroup_file(cpu, "cpu.cfs_quota_us", std::to_string(*r.cpu_quota)));
    if (r.cpu_burst) TRY(write_cgroup_file(cpu, "cpu.cfs_burst_us", std::to_string(*r.cpu_burst)));
  }
  if (std::string cpuset = path_of("cpuset"); !cpuset.empty()) {
    if (!r.cpuset_cpus.empty()) TRY(write_cgroup_file(cpuset, "cpuset.cpus", r.cpuset_cpus));
    if (!r.cpuset_mems.empty()) TRY(write_cgroup_file(cpuset, "cpuset.mems", r.cpuset_mems));
  }
  if (std::string pids = path_of("pids"); !pids.empty() && r.pids_limit) {
    TRY(write_cgroup_file(pids, "pids.max",
                          *r.pids_limit > 0 ? std::to_string(*r.pids_limit) : "max"));
  }
  if (std::string blkio = path_of("blkio"); !blkio.empty()) {
    bool cfq = fs::exists(fs::path(blkio) / "blkio.weight");
    if (r.blkio_weight)
      TRY(write_cgroup_file(blkio, cfq ? "blkio.weight" : "blkio.bfq.weight",
                            std::to_string(*r.blkio_weight)));
    for (const auto& d : r.blkio_weight_device)
      TRY(write_cgroup_file(blkio, cfq ? "blkio.weight_device" : "blkio.bfq.weight_device",
                            fmt::format("{}:{} {}", d.major, d.minor, d.value)));
    for (const auto& [file, devices] : r.blkio_throttle)
      for (const auto& d : devices)
        TRY(write_cgroup_file(blkio, "blkio.throttle." + file,
                              fmt::format("{}:{} {}", d.major, d.minor, d.value)));
  }
  TRY(apply_hugepages(path_of("hugetlb"), r.hugepage_limits, "limit_in_bytes"));
  TRY(apply_v1_devices(path_of("devices"), r.devices));
  // On a hybrid host the container also sits in the v2 hierarchy, where eBPF device programs
  // apply as well: enforce the same list there.
  if (mode_ == CgroupMode::kHybrid) TRY(apply_v2_devices(unified_, r.devices));
  if (!r.unified.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "linux.resources.unified: needs a cgroup v2 host, this one uses v1");
  return {};
}

Result<void> Cgroup::apply_v2(const Resources& r) {
  const std::string& dir = unified_;
  TRY(apply_v2_devices(dir, r.devices));
  if (r.memory_limit)
    TRY(write_cgroup_file(dir, "memory.max",
                          *r.memory_limit > 0 ? std::to_string(*r.memory_limit) : "max"));
  if (r.memory_reservation)
    TRY(write_cgroup_file(dir, "memory.low", std::to_string(*r.memory_reservation)));
  if (r.memory_swap) {
    // OCI's swap is memory+swap; v2's swap.max counts swap alone.
    std::string v = "max";
    if (*r.memory_swap > 0 && r.memory_limit && *r.memory_limit > 0)
      v = std::to_string(std::max<int64_t>(0, *r.memory_swap - *r.memory_limit));
    TRY(write_cgroup_file(dir, "memory.swap.max", v));
  }
  if (r.cpu_shares)
    TRY(write_cgroup_file(dir, "cpu.weight", std::to_string(cpu_shares_to_weight(*r.cpu_shares))));
  if (r.cpu_quota || r.cpu_period) {
    std::string quota = r.cpu_quota && *r.cpu_quota > 0 ? std::to_string(*r.cpu_quota) : "max";
    TRY(write_cgroup_file(dir, "cpu.max",
                          fmt::format("{} {}", quota, r.cpu_period.value_or(100000))));
  }
  if (r.cpu_burst) TRY(write_cgroup_file(dir, "cpu.max.burst", std::to_string(*r.cpu_burst)));
  if (!r.cpuset_cpus.empty()) TRY(write_cgroup_file(dir, "cpuset.cpus", r.cpuset_cpus));
  if (!r.cpuset_mems.empty()) TRY(write_cgroup_file(dir, "cpuset.mems", r.cpuset_mems));
  if (r.pids_limit)
    TRY(write_cgroup_file(dir, "pids.max",
                          *r.pids_limit > 0 ? std::to_string(*r.pids_limit) : "max"));
  if (r.blkio_weight)
    TRY(write_cgroup_file(dir, "io.weight",
                          std::to_string(blkio_weight_to_io_weight(*r.blkio_weight))));
  for (const auto& d : r.blkio_weight_device)
    TRY(write_cgroup_file(
        dir, "io.weight",
        fmt::format("{}:{} {}", d.major, d.minor, blkio_weight_to_io_weight(d.value))));
  TRY(apply_io_max(dir, r.blkio_throttle));
  TRY(apply_hugepages(dir, r.hugepage_limits, "max"));
  for (const auto& [file, value] : r.unified) {
    if (file.find('/') != std::string::npos || file.starts_with('.'))
      return make_error(ErrorCode::kInvalidArgument,
                        "linux.resources.unified: \"{}\" is not a cgroup file name", file);
    TRY(write_cgroup_file(dir, file, value));
  }
  return {};
}

}  // namespace vireo::container
