#pragma once
// Process helpers of the monitor: starting the runtime with chosen stdio, waiting for it,
// and the small file operations the monitor needs (atomic replace, whole-file read).
#include <sys/types.h>

#include <string>
#include <vector>

#include "base/result.h"

namespace vireo::monitor {

// Starts argv[0] (searched in PATH when it has no '/') with stdin, stdout and stderr on the
// given fds, every signal unblocked and at its default action, and no other fd inherited
// (the monitor opens everything O_CLOEXEC).
[[nodiscard]] Result<pid_t> spawn(const std::vector<std::string>& argv, int in, int out, int err);

// Waits for pid (a child) and returns its wait status.
[[nodiscard]] Result<int> wait_for(pid_t pid);

// Writes data to dir/name through dir/name.tmp and a rename, so readers see all or nothing.
[[nodiscard]] Result<void> write_file_atomic(const std::string& dir, const std::string& name,
                                             std::string_view data);

// The file's content, or an empty string when it cannot be read (best-effort reads).
std::string read_small_file(const std::string& path, size_t max = 64 * 1024);

// "what exited with status 3" / "what was killed by signal 9" for a wait status.
std::string describe_status(std::string_view what, int status);

}  // namespace vireo::monitor
