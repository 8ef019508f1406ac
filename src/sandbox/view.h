#pragma once
// The filesystem an app sees, built inside its new mount namespace by the sandbox's first
// process: a read-only, nosuid copy of the host tree, an overlay over each redirected path with
// the app's store as the writable layer, the home directory per profile, private /tmp and
// /dev/shm, the user's binds, the store folder hidden, then pivot_root and a fresh /proc.
#include <sys/types.h>

#include <string>
#include <vector>

#include "base/result.h"
#include "sandbox/app_paths.h"
#include "sandbox/sandbox.h"

namespace vireo::sandbox {

struct ViewPlan {
  AppPaths app;
  bool kernel_overlay = true;  // host root; else fuse-overlayfs over the system paths
  uid_t uid = 0;               // the host user, for fuse-overlayfs's view of ownership
  gid_t gid = 0;
  std::vector<std::string> redirected;   // existing host directories
  std::vector<std::string> extra_lower;  // trees laid between the store and the host, top first
  std::string home;                      // empty: the home is not handled
  Profile profile = Profile::kDefault;
  std::vector<Bind> binds;
};

// Creates the store folders the plan needs; runs in the caller before any namespace exists,
// so the folders belong to the user.
[[nodiscard]] Result<void> prepare_store(const ViewPlan& plan);
// Builds the view and makes it the root. Runs in the new mount namespace, with the namespace's
// full capabilities.
[[nodiscard]] Result<void> enter_view(const ViewPlan& plan);

}  // namespace vireo::sandbox
