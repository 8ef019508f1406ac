#pragma once
// Runs a program and collects its exit status and output. Used for peers (qemu-img, openssl,
// ip) and by tests; never through a shell, so arguments need no quoting.
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

// Finds an executable on PATH; empty when absent.
std::string find_program(const std::string& name);

}  // namespace vireo
