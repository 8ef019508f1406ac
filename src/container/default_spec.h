#pragma once
// The config.json `vireo-runtime spec` writes, and the default security profile engines can take
// from it: Docker's default capability set, masked and read-only /proc and /sys paths, and a
// seccomp allowlist equivalent in effect to Docker's default profile.
#include "base/json.h"

namespace vireo::container {

struct SpecOptions {
  bool rootless = false;   // a user namespace mapping the caller to root, no cgroup limits
  uid_t uid = 0, gid = 0;  // the caller, for rootless mappings
};

Json default_spec(const SpecOptions& o = {});
// The profile alone: {"capabilities": [...], "maskedPaths": [...], "readonlyPaths": [...],
// "seccomp": {...}}.
Json default_capabilities();
Json default_seccomp();
Json default_masked_paths();
Json default_readonly_paths();

// `vireo-runtime features` (runtime spec features.md).
Json features();

}  // namespace vireo::container
