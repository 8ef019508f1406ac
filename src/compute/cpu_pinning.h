#pragma once
// vCPU pinning (libvirt's <vcpupin>): vCPU i of a running QEMU runs only on host CPU cpus[i].
// The vCPU thread ids come from QMP query-cpus-fast; each thread gets sched_setaffinity. QEMU's
// own threads (main loop, I/O) stay unpinned.
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "compute/qmp_client.h"

namespace vireo::compute {

// One host CPU per vCPU, each online on this host (host_cpus: how many the host has, for tests).
[[nodiscard]] Result<void> validate_pinning(const std::vector<int>& cpus, int vcpus, int host_cpus);
[[nodiscard]] Result<void> validate_pinning(const std::vector<int>& cpus, int vcpus);

// The vCPU thread ids from query-cpus-fast's answer, in vCPU order.
[[nodiscard]] Result<std::vector<pid_t>> vcpu_threads(const Json& query_cpus_fast);

[[nodiscard]] Result<void> pin_vcpus(QmpClient& qmp, const std::vector<int>& cpus);

}  // namespace vireo::compute
