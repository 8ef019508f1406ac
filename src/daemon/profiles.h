#pragma once
// Profiles (/1.0/profiles): named sets of configuration and devices that instances (VMs,
// containers) apply, as in Incus. The first kind on the generic object machinery.
#include "server/objects.h"

namespace vireo::daemon {

server::ObjectKind profile_kind();

// Checks a profile spec: {"description": str, "config": {key: str}, "devices": {name: {key: str}}}.
Result<Json> validate_profile(const Json& spec);

}  // namespace vireo::daemon
