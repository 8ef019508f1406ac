#include "compute/cpu_pinning.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>

namespace vireo::compute {

Result<void> validate_pinning(const std::vector<int>& cpus, int vcpus, int host_cpus) {
  if (cpus.size() != static_cast<size_t>(vcpus))
    return make_error(ErrorCode::kInvalidArgument,
                      "cpu pinning lists {} host CPUs for {} vCPUs: give one per vCPU", cpus.size(),
                      vcpus);
  for (int cpu : cpus)
    if (cpu < 0 || cpu >= host_cpus)
      return make_error(ErrorCode::kInvalidArgument,
                        "cpu pinning: host CPU {} does not exist (this host has 0-{})", cpu,
                        host_cpus - 1);
  return {};
}

Result<void> validate_pinning(const std::vector<int>& cpus, int vcpus) {
  long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  return validate_pinning(cpus, vcpus, online > 0 ? static_cast<int>(online) : 1);
}

Result<std::vector<pid_t>> vcpu_threads(const Json& reply) {
  if (!reply.is_array()) return make_error(ErrorCode::kInternal, "query-cpus-fast: not a list");
  std::vector<std::pair<int, pid_t>> found;
  for (const auto& cpu : reply) {
    if (!cpu.is_object() || !cpu.contains("cpu-index") || !cpu.contains("thread-id") ||
        !cpu["cpu-index"].is_number_integer() || !cpu["thread-id"].is_number_integer())
      return make_error(ErrorCode::kInternal, "query-cpus-fast: entry without cpu-index/thread-id");
    found.emplace_back(cpu["cpu-index"].get<int>(), cpu["thread-id"].get<pid_t>());
  }
  std::sort(found.begin(), found.end());
  std::vector<pid_t> threads;
  for (const auto& [index, tid] : found) threads.push_back(tid);
  return threads;
}

Result<void> pin_vcpus(QmpClient& qmp, const std::vector<int>& cpus) {
  auto threads = TRY(vcpu_threads(TRY(qmp.execute("query-cpus-fast"))));
  TRY(validate_pinning(cpus, static_cast<int>(threads.size())));
  for (size_t i = 0; i < threads.size(); ++i) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpus[i], &set);
    if (::sched_setaffinity(threads[i], sizeof set, &set) != 0)
      return errno_error(
          fmt::format("pin vCPU {} (thread {}) to host CPU {}", i, threads[i], cpus[i]));
  }
  return {};
}

}  // namespace vireo::compute
