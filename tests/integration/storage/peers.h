#pragma once
// Helpers for the storage integration tests: temp dirs, running peers, and vireo-nbd as a child
// process that announces readiness on stdout.
#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/subprocess.h"
#include "test_peers.h"

namespace vireo::storage::testing {

namespace fs = std::filesystem;

using vireo::testing::have_programs;
using vireo::testing::make_temp_dir;
// Runs a peer with a 60 s bound; the test fails (not hangs) if it cannot start.
inline ProcessResult run(const std::vector<std::string>& argv) {
  return vireo::testing::run_bounded(argv, std::chrono::seconds(60));
}

// vireo-nbd (or another Vireo server that prints a "ready ..." line, such as vireo-storaged)
// from VIREO_BIN_DIR, started with args; waits for its "ready ..." line.
class NbdProcess : public vireo::testing::ReadyProcess {
 public:
  explicit NbdProcess(const std::vector<std::string>& args,
                      const std::string& program = "vireo-nbd");
  // The listener addresses from the ready line ("unix:/p", "tcp:127.0.0.1:1234").
  const std::vector<std::string>& addresses() const { return addresses_; }

 private:
  std::vector<std::string> addresses_;
};

}  // namespace vireo::storage::testing
