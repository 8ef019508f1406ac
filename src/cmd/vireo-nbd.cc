// vireo-nbd: serves image files over NBD as its own process, so that exports keep serving while
// vireod restarts.
//   vireo-nbd --socket PATH | --listen HOST:PORT [--read-only] [--format raw|qcow2|auto]
//   [--tls-cert FILE --tls-key FILE [--tls-ca FILE]] [--tls-psk FILE] NAME=FILE...
// With --tls-cert/--tls-key or --tls-psk every listener requires TLS (NBD_OPT_STARTTLS); with
// --tls-ca, also a client certificate signed by that CA (or a PSK username and key).
// Prints "ready <address>..." on stdout once every listener accepts connections; SIGTERM or
// SIGINT ends it cleanly.
#include <signal.h>

#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>

#include "base/log.h"
#include "storage/image.h"
#include "storage/nbd/server.h"

using namespace vireo;
using namespace vireo::storage;

namespace {

struct Args {
  std::vector<std::string> sockets;
  std::vector<std::string> listens;
  bool read_only = false;
  std::string format = "auto";
  std::vector<std::string> exports;
  nbd::TlsConfig tls;
  bool verbose = false;
};

Result<std::vector<nbd::ExportConfig>> open_exports(const Args& args) {
  ImageFormat format = TRY(parse_image_format(args.format));
  std::vector<nbd::ExportConfig> out;
  for (const std::string& spec : args.exports) {
    size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0)
      return make_error(ErrorCode::kInvalidArgument, "export {} is not NAME=FILE", spec);
    nbd::ExportConfig e;
    e.name = spec.substr(0, eq);
    std::string file = spec.substr(eq + 1);
    OpenMode mode = args.read_only ? OpenMode::kReadOnly : OpenMode::kReadWrite;
    e.device = TRY_CTX(open_image(file, format, mode), "export {}", e.name);
    e.read_only = args.read_only;
    e.description = file;
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::vector<std::string>> start_listeners(nbd::NbdServer& server, const Args& args) {
  std::vector<std::string> addresses;
  for (const std::string& path : args.sockets) {
    TRY(server.listen_unix(path, args.tls));
    addresses.push_back("unix:" + path);
  }
  for (const std::string& hp : args.listens) {
    auto [host, port] = TRY_CTX(nbd::parse_host_port(hp), "--listen");
    addresses.push_back("tcp:" + TRY(server.listen_tcp(host, port, args.tls)));
  }
  return addresses;
}

Result<void> serve(const Args& args) {
  auto exports = TRY(open_exports(args));
  auto server = TRY(nbd::NbdServer::create(std::move(exports)));
  auto addresses = TRY(start_listeners(*server, args));
  // Signals are taken by one thread with sigwait; every other thread has them blocked.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&set, &sig);
    server->stop();
  });
  std::string line = "ready";
  for (const auto& a : addresses) line += " " + a;
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  auto result = server->run();
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vireo-nbd: serve disk images over NBD"};
  Args args;
  app.add_option("--socket", args.sockets, "Unix socket path to listen on")
      ->allow_extra_args(false);
  app.add_option("--listen", args.listens, "TCP HOST:PORT to listen on (port 0: any free port)")
      ->allow_extra_args(false);
  app.add_flag("--read-only", args.read_only, "Export read-only");
  app.add_option("--format", args.format, "Image format: raw, qcow2 or auto")
      ->check(CLI::IsMember({"raw", "qcow2", "auto"}));
  app.add_option("--tls-cert", args.tls.cert_file,
                 "PEM server certificate: every listener requires TLS");
  app.add_option("--tls-key", args.tls.key_file, "PEM private key of --tls-cert");
  app.add_option("--tls-ca", args.tls.ca_file,
                 "PEM CA: clients must present a certificate signed by it (mutual TLS)");
  app.add_option("--tls-psk", args.tls.psk_file,
                 "USERNAME:HEXKEY lines: TLS with pre-shared keys (every listener requires TLS)");
  app.add_flag("-v,--verbose", args.verbose, "Log debug messages");
  app.add_option("exports", args.exports, "NAME=FILE to export")->required();
  CLI11_PARSE(app, argc, argv);
  init_logging(args.verbose ? LogLevel::kDebug : LogLevel::kInfo);
  if (args.sockets.empty() && args.listens.empty()) {
    std::fprintf(stderr, "vireo-nbd: give --socket or --listen\n");
    return 2;
  }
  if (auto r = serve(args); !r) {
    std::fprintf(stderr, "vireo-nbd: %s\n", r.error().message().c_str());
    return 1;
  }
  return 0;
}
