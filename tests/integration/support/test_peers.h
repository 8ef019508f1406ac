#pragma once
// Helpers for integration tests that drive peers (qemu-img, skopeo, ...) and Vireo servers:
// temp folders, peers run with a time bound, and a server child process that prints one
// "ready ..." line on stdout once it serves.
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "base/subprocess.h"

namespace vireo::testing {

namespace fs = std::filesystem;

fs::path make_temp_dir(const std::string& prefix);
// Runs a peer with a time bound; a failure to start is a failed result (exit_code -1), not a hang.
ProcessResult run_bounded(const std::vector<std::string>& argv,
                          std::chrono::seconds limit = std::chrono::seconds(120));
// True when every named program is on PATH.
bool have_programs(const std::vector<std::string>& names);

// program (from VIREO_BIN_DIR) started with args; the constructor waits up to 20 s for its
// "ready ..." line. Killed when destroyed unless stopped.
class ReadyProcess {
 public:
  ReadyProcess(const std::string& program, const std::vector<std::string>& args);
  ~ReadyProcess();
  ReadyProcess(const ReadyProcess&) = delete;
  ReadyProcess& operator=(const ReadyProcess&) = delete;

  bool ready() const { return !ready_line_.empty(); }
  // The ready line without its newline; empty when the server did not come up.
  const std::string& ready_line() const { return ready_line_; }
  pid_t pid() const { return pid_; }
  bool alive() const;
  // Sends SIGTERM and waits; returns the exit status the way a shell reports it.
  int stop();

 private:
  pid_t pid_ = -1;
  std::string ready_line_;
};

}  // namespace vireo::testing
