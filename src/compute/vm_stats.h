#pragma once
// VmStats: what one running VM uses, as `vireo vm stats` shows it. CPU time of the QEMU process
// and of each vCPU thread (from /proc, the thread ids from QMP query-cpus-fast), QEMU's resident
// memory, the balloon's size and the guest's own memory figures (virtio-balloon statistics, when
// the guest driver reports them), and per-disk I/O counters (QMP query-blockstats).
// Rates (CPU %, bytes/s) are the caller's: two samples and the time between them.
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "compute/qmp_client.h"

namespace vireo::compute {

// The balloon device's QOM path (vireo's QEMU command line gives it id "balloon0").
inline constexpr const char* kBalloonPath = "/machine/peripheral/balloon0";

struct DiskStats {
  std::string id;  // disk0, disk1, ... (the -device id)
  uint64_t read_bytes = 0, written_bytes = 0;
  uint64_t read_ops = 0, write_ops = 0, flush_ops = 0;
};

struct GuestMemory {
  // From the guest's balloon driver (virtio-balloon stats); absent keys stay nullopt.
  std::optional<uint64_t> total, free, available;
};

struct VmStats {
  uint64_t cpu_ns = 0;              // user + system time of the whole QEMU process
  std::vector<uint64_t> vcpu_ns;    // per vCPU thread
  uint64_t rss_bytes = 0;           // QEMU's resident memory
  std::optional<uint64_t> balloon;  // the guest's memory as the balloon leaves it
  GuestMemory guest;                // empty until the guest driver reported
  std::vector<DiskStats> disks;
};

// Samples a running VM: its QEMU pid and QMP connection.
[[nodiscard]] Result<VmStats> collect_stats(pid_t qemu_pid, QmpClient& qmp);
Json to_json(const VmStats& stats);

// Parsers over QEMU's and /proc's text, separate for the unit tests.
// CPU time (utime + stime) of a /proc/PID[/task/TID]/stat line, in ns.
[[nodiscard]] Result<uint64_t> parse_proc_stat_cpu_ns(const std::string& stat_line);
std::vector<DiskStats> parse_blockstats(const Json& query_blockstats);
GuestMemory parse_guest_stats(const Json& qom_guest_stats);

// Asks the guest's balloon driver to report every interval_s seconds (0 stops it).
[[nodiscard]] Result<void> set_balloon_polling(QmpClient& qmp, int interval_s);
// Sets the balloon's target: the memory the guest keeps.
[[nodiscard]] Result<void> set_balloon_target(QmpClient& qmp, uint64_t bytes);

}  // namespace vireo::compute
