// vireo-netd: Vireo's userspace virtual switch and router. Controlled over a Unix socket with
// JSON lines (see docs/network.md); keeps forwarding when its controller goes away.
#include <CLI/CLI.hpp>

#include "base/log.h"
#include "network/ipv4.h"
#include "network/server.h"
#include "network/worker.h"

int main(int argc, char** argv) {
  CLI::App app{"vireo-netd: Vireo's virtual switch, router and network functions"};
  std::string control;
  std::string state;
  std::string vxlan_local;
  size_t threads = 0;
  bool debug = false;
  app.add_option("--control", control, "Unix socket for control requests (JSON lines)")->required();
  app.add_option("--state", state, "Directory where the configuration is kept across restarts");
  app.add_option("--vxlan-local", vxlan_local,
                 "This host's VTEP address: VXLAN is sent from and received on it (default: any)");
  app.add_option("--threads", threads,
                 "Datapath threads, each polling its share of the ports (default: one per CPU, "
                 "at most 8)")
      ->check(CLI::Range(size_t{1}, vireo::net::kMaxWorkers));
  app.add_flag("--debug", debug, "Log debug messages");
  CLI11_PARSE(app, argc, argv);
  vireo::init_logging(debug ? vireo::LogLevel::kDebug : vireo::LogLevel::kInfo);

  uint32_t vtep = 0;
  if (!vxlan_local.empty()) {
    auto ip = vireo::net::parse_ipv4(vxlan_local);
    if (!ip) {
      spdlog::error("vireo-netd: --vxlan-local {}: not an IPv4 address", vxlan_local);
      return 2;
    }
    vtep = *ip;
  }
  auto server = vireo::net::Server::create({control, state, vtep, threads});
  if (!server) {
    spdlog::error("vireo-netd: {}", server.error().message());
    return 1;
  }
  if (auto r = (*server)->run(); !r) {
    spdlog::error("vireo-netd: {}", r.error().message());
    return 1;
  }
  return 0;
}
