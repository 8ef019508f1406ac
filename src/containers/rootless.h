#pragma once
// Rootless containers: an engine whose process is not root (vireod run by a user on a state
// root of its own) runs each container in a user namespace that maps the user's uid and gid to
// root, as `vireo-runtime spec --rootless` does. What needs root is refused at create with one
// line: Vireo networks and published ports (vireo-netd and veth pairs need root), a user other
// than root in the container (only one id is mapped), and resource limits unless the user owns
// a delegated cgroup v2 subtree. Pure functions over the request, the spec and the host's
// cgroup files; thread-safe.
#include <string>

#include "base/json.h"
#include "base/result.h"
#include "containers/request.h"

namespace vireo::containers {

// Whether containers made by this process are rootless (its effective uid is not 0).
bool rootless();

// The root of the cgroup v2 subtree delegated to this user that holds this process (its
// highest ancestor the user owns and may write, with the controllers limits need), as a path
// in the cgroup2 hierarchy ("/user.slice/user-1000.slice/user@1000.service"); "" when there is
// none: a cgroup v1 or hybrid host, or nothing delegated.
std::string delegated_cgroup();

// Refuses (kInvalidArgument, one line) what a rootless engine cannot do for r. Called before
// anything is made.
[[nodiscard]] Result<void> check_rootless(const CreateRequest& r);

// Completes build_spec's rootless spec (container::default_spec with rootless set): a network
// namespace of the user namespace's own for network none, no supplementary groups (setgroups
// is denied), the limits under the delegated cgroup (linux.cgroupsPath) or no resources at all.
// kInvalidArgument when the image's user is not root.
[[nodiscard]] Result<void> finish_rootless_spec(Json& spec, const CreateRequest& r,
                                                const std::string& id);

}  // namespace vireo::containers
