#pragma once
// Helpers for the registry integration tests: temp dirs, peers run with a time bound, and
// vireo-registry (from VIREO_BIN_DIR) as a child process that announces "ready URL" on stdout.
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/subprocess.h"
#include "test_peers.h"

namespace vireo::registry::testing {

namespace fs = std::filesystem;

using vireo::testing::have_programs;
using vireo::testing::make_temp_dir;
// Runs a peer with a 120 s bound; a failure to start is a failed result, not a hang.
inline ProcessResult run(const std::vector<std::string>& argv) {
  return vireo::testing::run_bounded(argv);
}

// A TCP socket listening on 127.0.0.1 at a port the kernel picks (fd -1 on failure).
struct Listener {
  int fd = -1;
  uint16_t port = 0;
};
Listener listen_loopback();
// A loopback port nobody listens on (bound, then closed).
uint16_t unused_port();

// skopeo --insecure-policy ARGS (a 120 s bound).
ProcessResult skopeo(std::vector<std::string> args);
// An OCI layout at dir, tag "t", built by umoci: /bin (busybox) and /hello.txt in two layers.
// Returns "" or what failed.
std::string make_umoci_layout(const fs::path& dir, const fs::path& scratch);
// The manifest digest of the first image of an OCI layout ("" when unreadable).
std::string layout_digest(const fs::path& layout);

// vireo-registry --root root --listen 127.0.0.1:0 plus extra args, up once its ready line
// ("ready http://127.0.0.1:PORT") is read.
class RegistryProcess : public vireo::testing::ReadyProcess {
 public:
  RegistryProcess(const fs::path& root, const std::vector<std::string>& extra = {});
  bool ready() const { return port_ != 0; }
  uint16_t port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  uint16_t port_ = 0;
};

}  // namespace vireo::registry::testing
