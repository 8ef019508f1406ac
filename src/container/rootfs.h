#pragma once
// The container's filesystem view, built by the container init inside its new mount namespace:
// config mounts (targets resolved inside the rootfs with openat2 RESOLVE_IN_ROOT, then mounted
// through /proc/self/fd/N so a symlink in the image can never redirect a mount onto the host),
// /dev and its devices, pivot_root, then masked and read-only paths. Runs in the init only.
#include "base/result.h"
#include "container/cgroup.h"
#include "container/config.h"

namespace vireo::container {

struct RootfsOptions {
  bool user_ns = false;    // devices are bind-mounted, not created, in a user namespace
  bool cgroup_ns = false;  // a "cgroup" mount can show the namespace's own root
  const Cgroup* cgroup = nullptr;
};

// Before pivot: propagation, rootfs bind, config mounts, devices and /dev links.
[[nodiscard]] Result<void> prepare_rootfs(const Config& c, const RootfsOptions& o);
// pivot_root into the rootfs (or MS_MOVE + chroot with no_pivot) and drop the old root.
[[nodiscard]] Result<void> enter_rootfs(const Config& c, bool no_pivot);
// After pivot: rootfsPropagation, sysctl, masked and read-only paths, read-only root.
[[nodiscard]] Result<void> finish_rootfs(const Config& c);

}  // namespace vireo::container
