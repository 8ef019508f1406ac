// vireo-storaged: the host's storage server. Owns the pools (dir and thin), serves every volume
// over NBD on one Unix socket (export "POOL/VOL"), optionally also on TCP (--nbd-listen, TLS with
// --tls-cert/--tls-key[/--tls-ca] and/or --tls-psk), and takes JSON-line control requests on
// another Unix socket (see docs/storage.md). Keeps serving NBD while its controller restarts.
#include <cstdio>

#include <CLI/CLI.hpp>

#include "base/log.h"
#include "storage/storaged/storaged.h"

int main(int argc, char** argv) {
  CLI::App app{"vireo-storaged: Vireo's storage pools and NBD exports"};
  std::string state, control, nbd, nbd_listen;
  vireo::storage::nbd::TlsConfig tls;
  bool debug = false;
  app.add_option("--state", state, "State directory (pool definitions)")->required();
  app.add_option("--control", control, "Unix socket for control requests (JSON lines)")->required();
  app.add_option("--nbd-socket", nbd, "Unix socket serving every volume over NBD")->required();
  app.add_option("--nbd-listen", nbd_listen,
                 "TCP HOST:PORT also serving every volume over NBD (port 0: any free port)");
  app.add_option("--tls-cert", tls.cert_file, "PEM certificate: --nbd-listen requires TLS");
  app.add_option("--tls-key", tls.key_file, "PEM private key of --tls-cert");
  app.add_option("--tls-ca", tls.ca_file,
                 "PEM CA: NBD clients over TCP must present a certificate signed by it");
  app.add_option("--tls-psk", tls.psk_file,
                 "USERNAME:HEXKEY lines: TLS-PSK for --nbd-listen (instead of or with X.509)");
  app.add_flag("--debug", debug, "Log debug messages");
  CLI11_PARSE(app, argc, argv);
  vireo::init_logging(debug ? vireo::LogLevel::kDebug : vireo::LogLevel::kInfo);

  auto server = vireo::storage::Storaged::create({state, control, nbd, nbd_listen, tls});
  if (!server) {
    spdlog::error("vireo-storaged: {}", server.error().message());
    return 1;
  }
  std::string tcp = (*server)->nbd_tcp_address();
  std::printf("ready control:%s nbd:%s%s\n", control.c_str(), nbd.c_str(),
              tcp.empty() ? "" : (" tcp:" + tcp).c_str());
  std::fflush(stdout);
  if (auto r = (*server)->run(); !r) {
    spdlog::error("vireo-storaged: {}", r.error().message());
    return 1;
  }
  return 0;
}
