#pragma once
// Runs a program and collects its exit status and output. Used for peers (qemu-img, openssl,
// ip) and by tests; never through a shell, so arguments need no quoting.
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace vireo {

struct ProcessResult {
  int exit_code = -1;   // valid when the process exited
  int term_signal = 0;  // non-zero when it was killed by a signal
  std::string out;
  std::string err;
  bool ok() const { return term_signal == 0 && exit_code == 0; }
};

struct RunOptions {
  std::string input;                                 // written to stdin, then closed
  std::optional<std::chrono::milliseconds> timeout;  // SIGKILL after this long
  std::vector<std::string> extra_env;                // "K=V" added to the environment
};

// Fails only when the program cannot be started (or times out); a non-zero exit is a result.
[[nodiscard]] Result<ProcessResult> run_process(const std::vector<std::string>& argv,
                                                const RunOptions& options = {});

// argv/envp for exec*: pointers into v (which must outlive them), null-terminated.
std::vector<char*> c_strings(const std::vector<std::string>& v);

// Finds an executable on PATH; empty when absent.
std::string find_program(const std::string& name);

// A helper binary shipped with Vireo: next to the running executable first (a build tree or an
// install prefix), then on PATH; empty when absent.
std::string find_sibling_program(const std::string& name);

// Starts argv (searched on PATH unless it has a '/') as a long-lived child that must outlive
// the caller: its own session (no signal of the caller's terminal or process group reaches it),
// signal mask and handlers reset, stdin on /dev/null, stdout and stderr into log_fd, and no other
// descriptor inherited. The caller reaps it or leaves it to init.
[[nodiscard]] Result<pid_t> spawn_detached(const std::vector<std::string>& argv, int log_fd);

}  // namespace vireo
