// vireo-storaged: the host's storage server. Owns the pools (dir and thin), serves every volume
// over NBD on one Unix socket (export "POOL/VOL") and takes JSON-line control requests on
// another (see docs/storage.md). Keeps serving NBD while its controller restarts.
#include <cstdio>

#include <CLI/CLI.hpp>

#include "base/log.h"
#include "storage/storaged/storaged.h"

int main(int argc, char** argv) {
  CLI::App app{"vireo-storaged: Vireo's storage pools and NBD exports"};
  std::string state, control, nbd;
  bool debug = false;
  app.add_option("--state", state, "State directory (pool definitions)")->required();
  app.add_option("--control", control, "Unix socket for control requests (JSON lines)")->required();
  app.add_option("--nbd-socket", nbd, "Unix socket serving every volume over NBD")->required();
  app.add_flag("--debug", debug, "Log debug messages");
  CLI11_PARSE(app, argc, argv);
  vireo::init_logging(debug ? vireo::LogLevel::kDebug : vireo::LogLevel::kInfo);

  auto server = vireo::storage::Storaged::create({state, control, nbd});
  if (!server) {
    spdlog::error("vireo-storaged: {}", server.error().message());
    return 1;
  }
  std::printf("ready control:%s nbd:%s\n", control.c_str(), nbd.c_str());
  std::fflush(stdout);
  if (auto r = (*server)->run(); !r) {
    spdlog::error("vireo-storaged: {}", r.error().message());
    return 1;
  }
  return 0;
}
