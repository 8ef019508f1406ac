#pragma once
// `exec`: starts an additional process in a running container. The new process joins the init's
// namespaces (setns; pid and time through the parent, which only affects its children), its
// cgroup, and gets the process settings of the bundle's config (capabilities, seccomp,
// no_new_privs, rlimits) unless the caller's process.json replaces them.
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "container/config.h"
#include "container/state.h"

namespace vireo::container {

struct ExecOptions {
  std::string process_file;       // a process.json; replaces args/env/cwd/user from the config
  std::vector<std::string> args;  // used when there is no process file
  std::vector<std::string> env;   // added to the config's env
  std::string cwd;
  std::optional<std::pair<uid_t, gid_t>> user;
  bool tty = false;
  std::string console_socket;
  std::string pid_file;
  bool detach = false;
  int preserve_fds = 0;
};

// The process to run: from process_file, or the config's process with args/env/cwd/user changed.
[[nodiscard]] Result<Process> exec_process(const Config& config, const ExecOptions& o);

// Starts p in the container of state s; returns its exit status (0 when detached).
[[nodiscard]] Result<int> exec_in_container(const State& s, const Config& config, const Process& p,
                                            const ExecOptions& o);

}  // namespace vireo::container
