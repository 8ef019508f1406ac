#pragma once
// Command line of vireo-monitor, parsed by hand (the monitor links no argument library):
//
//   vireo-monitor --id ID --bundle DIR --runtime PATH [--runtime-root DIR] --state-dir DIR
//                 [--tty] [--stdin] [--log-max-size BYTES] [--log-max-files N] [--ready-fd N]
//
// See docs/containers.md, section "vireo-monitor", for what each option does.
#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace vireo::monitor {

enum class Terminal { kPipes, kTty };
enum class Stdin { kNull, kOpen };

struct Options {
  std::string id;
  std::string bundle;
  std::string runtime;
  std::string runtime_root;  // empty: the runtime's default --root
  std::string state_dir;
  Terminal terminal = Terminal::kPipes;
  Stdin stdin_mode = Stdin::kNull;
  uint64_t log_max_size = 10 * 1024 * 1024;  // bytes per log file; 0 disables rotation
  int log_max_files = 5;                     // ctr.log plus ctr.log.1 .. ctr.log.(N-1)
  int ready_fd = -1;

  // Whether attach clients may write to the container (a pipe with --stdin, or the pty).
  bool accepts_input() const { return terminal == Terminal::kTty || stdin_mode == Stdin::kOpen; }
};

// Parses argv (without argv[0]). Every error names the option: "--log-max-size: not a number".
[[nodiscard]] Result<Options> parse_options(const std::vector<std::string>& args);

// The usage text printed for --help and after an error.
const char* usage();

}  // namespace vireo::monitor
