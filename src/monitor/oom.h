#pragma once
// Finding whether the kernel's OOM killer struck a container: the oom_kill counter of the
// memory cgroup of its init, from cgroup v2's memory.events or cgroup v1's memory.oom_control
// (hosts run either, or both as a hybrid). Best effort: no counter found means "not killed".
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vireo::monitor {

struct OomCounter {
  std::string path;  // memory.events (v2) or memory.oom_control (v1)
};

// The counter file of pid's memory cgroup, given the texts of /proc/PID/cgroup and
// /proc/self/mountinfo, and a predicate for which files exist (tests pass their own).
std::optional<OomCounter> find_oom_counter(std::string_view proc_cgroup, std::string_view mountinfo,
                                           bool (*exists)(const std::string&));
// The same for a live process, from /proc.
std::optional<OomCounter> find_oom_counter(pid_t pid);

// The "oom_kill N" value in the counter file's text (0 when absent).
uint64_t parse_oom_kills(std::string_view text);
uint64_t read_oom_kills(const OomCounter& c);

}  // namespace vireo::monitor
