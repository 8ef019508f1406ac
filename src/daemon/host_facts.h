#pragma once
// Facts about the host shown by GET /1.0, gathered once at start-up (the KVM probe takes a
// few milliseconds, too long for every request).
#include "api/server_info.h"

namespace vireo::daemon {

api::HostInfo gather_host_facts();

// "v2" (unified only), "hybrid" (v1 controllers plus a cgroup2 mount) or "v1".
std::string detect_cgroup_mode();

}  // namespace vireo::daemon
