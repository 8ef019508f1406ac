// vireo-nbd: serves image files over NBD as its own process, so that exports keep serving while
// vireod restarts.
//   vireo-nbd --socket PATH | --listen HOST:PORT [--read-only] [--format raw|qcow2|auto]
//   NAME=FILE...
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
    TRY(server.listen_unix(path));
    addresses.push_back("unix:" + path);
  }
  for (const std::string& hp : args.listens) {
    size_t colon = hp.rfind(':');
    if (colon == std::string::npos)
      return make_error(ErrorCode::kInvalidArgument, "--listen {} is not HOST:PORT", hp);
    std::string host = hp.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    unsigned long port = 0;
    try {
      port = std::stoul(hp.substr(colon + 1));
    } catch (const std::exception&) {
      port = 65536;
    }
    if (port > 65535) return make_error(ErrorCode::kInvalidArgument, "bad port in {}", hp);
    addresses.push_back("tcp:" + TRY(server.listen_tcp(host, uint16_t(port))));
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
