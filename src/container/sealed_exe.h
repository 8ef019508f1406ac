#pragma once
// Protection against the /proc/self/exe overwrite escape (CVE-2019-5736): a process inside the
// container that can see a runtime process (the init before it execs, an `exec` joining, or a
// container whose entrypoint is /proc/self/exe) could open /proc/<pid>/exe and write to the
// runtime binary on the host. The runtime therefore re-executes itself, before it creates any
// container process, from a copy nobody can write:
//  - preferred: the binary seen through a private read-only overlayfs mount that is detached
//    from every mount namespace (runc 1.2 does the same). Costs one mount, no copy; writes fail
//    with EROFS and the mount cannot be made writable since it has no upper layer.
//  - fallback (no overlayfs, e.g. unprivileged): a memfd copy sealed against writes.
#include <string>

#include "base/result.h"

namespace vireo::container {

// Re-executes the current program from a sealed copy, unless this process already is one; then
// it returns normally. scratch_dir is a directory the runtime owns (an empty overlay layer is
// made there). Returns an error only when neither method works.
[[nodiscard]] Result<void> ensure_sealed_exe(char** argv, const std::string& scratch_dir);

}  // namespace vireo::container
