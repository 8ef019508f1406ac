#pragma once
// Helpers for the storage integration tests: temp dirs, running peers, and vireo-nbd as a child
// process that announces readiness on stdout.
#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/subprocess.h"

namespace vireo::storage::testing {

namespace fs = std::filesystem;

fs::path make_temp_dir(const std::string& prefix);
// Runs a peer with a 60 s bound; the test fails (not hangs) if it cannot start.
ProcessResult run(const std::vector<std::string>& argv);
// True when every named program is on PATH.
bool have_programs(const std::vector<std::string>& names);

// vireo-nbd (or another Vireo server that prints a "ready ..." line, such as vireo-storaged)
// from VIREO_BIN_DIR, started with args; waits for its "ready ..." line.
class NbdProcess {
 public:
  explicit NbdProcess(const std::vector<std::string>& args,
                      const std::string& program = "vireo-nbd");
  ~NbdProcess();
  bool ready() const { return !ready_line_.empty(); }
  // The listener addresses from the ready line ("unix:/p", "tcp:127.0.0.1:1234").
  const std::vector<std::string>& addresses() const { return addresses_; }
  // Sends SIGTERM and waits; returns the exit status (0 on a clean stop).
  int stop();
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::string ready_line_;
  std::vector<std::string> addresses_;
};

}  // namespace vireo::storage::testing
