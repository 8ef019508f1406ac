#pragma once
// The per-process part of starting a container process (init or exec): rlimits, console, user
// and groups, capabilities, and finding the program. Runs in the process being set up, after
// its namespaces and root are in place.
#include <string>
#include <vector>

#include "base/result.h"
#include "container/config.h"

namespace vireo::container {

[[nodiscard]] Result<void> set_rlimits(const Process& p);
[[nodiscard]] Result<void> set_oom_score_adj(const Process& p);
// Creates a pty in the container's devpts, sends the master over console_fd (SCM_RIGHTS) and
// makes the slave the controlling terminal and stdio.
[[nodiscard]] Result<void> setup_console(const Process& p, int console_fd);
// Drops the bounding set, switches uid/gid/groups keeping capabilities, then sets effective,
// permitted, inheritable and ambient sets. No capabilities field: all are dropped unless uid 0.
[[nodiscard]] Result<void> switch_user(const Process& p);
// The absolute path of args[0], searched in the process's PATH like execvp.
[[nodiscard]] Result<std::string> find_executable(const Process& p);
// Changes to p.cwd and checks that the result is inside the container's root, so a cwd that
// reaches the host through an inherited fd (/proc/self/fd/N) is refused.
[[nodiscard]] Result<void> enter_cwd(const Process& p);

}  // namespace vireo::container
