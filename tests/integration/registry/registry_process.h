#pragma once
// Helpers for the registry integration tests: temp dirs, peers run with a time bound, and
// vireo-registry (from VIREO_BIN_DIR) as a child process that announces "ready URL" on stdout.
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/subprocess.h"

namespace vireo::registry::testing {

namespace fs = std::filesystem;

fs::path make_temp_dir(const std::string& prefix);
// Runs a peer with a 120 s bound; a failure to start is a failed result, not a hang.
ProcessResult run(const std::vector<std::string>& argv);
bool have_programs(const std::vector<std::string>& names);

class RegistryProcess {
 public:
  // Starts vireo-registry --root root --listen 127.0.0.1:0 plus extra args and waits (bounded)
  // for its ready line.
  RegistryProcess(const fs::path& root, const std::vector<std::string>& extra = {});
  ~RegistryProcess();
  bool ready() const { return port_ != 0; }
  uint16_t port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  bool alive() const;
  int stop();

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

}  // namespace vireo::registry::testing
