#pragma once
// What a sandboxed app may do once it runs: a seccomp deny-list of what an app never needs
// (kernel modules, kexec, mounts, bpf, keyrings, tracing other processes, ...), no new
// privileges, and the capabilities of its profile. Applied in the app's process just before exec.
#include <sys/types.h>

#include "base/result.h"
#include "sandbox/sandbox.h"

namespace vireo::sandbox {

// Switches to uid/gid (inside the app's user namespace), keeps the profile's capabilities
// (Docker's default set for root in the default profile, none otherwise), sets no_new_privs
// and loads the seccomp filter.
[[nodiscard]] Result<void> apply_policy(Profile profile, uid_t uid, gid_t gid);

}  // namespace vireo::sandbox
