// vireo-registry: a standalone OCI distribution-spec 1.1 registry (docs/registry.md).
//   vireo-registry --root DIR --listen HOST:PORT [--tls-cert F --tls-key F]
//                  [--htpasswd F | --token-realm URL --token-service S --token-issuer I
//                   --token-cert-bundle F]
//   vireo-registry gc --root DIR
// Prints "ready http://HOST:PORT" (or https) on stdout once it accepts connections.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>

#include "base/file.h"
#include "base/log.h"
#include "registry/server.h"

using namespace vireo;
using namespace vireo::registry;

namespace {

Result<std::pair<std::string, uint16_t>> parse_listen(const std::string& s) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos)
    return make_error(ErrorCode::kInvalidArgument,
                      "--listen "
                      "must be HOST:PORT, not '{}'",
                      s);
  std::string host = s.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  try {
    int port = std::stoi(s.substr(colon + 1));
    if (port < 0 || port > 65535) throw std::out_of_range("port");
    return std::pair{host, uint16_t(port)};
  } catch (const std::exception&) {
    return make_error(ErrorCode::kInvalidArgument, "--listen: bad port in '{}'", s);
  }
}

int fail(const Error& e) {
  std::fprintf(stderr, "vireo-registry: %s\n", e.message().c_str());
  return 1;
}

// Stops the server on SIGTERM or SIGINT (blocked in every thread, taken here with sigwait).
// The caller joins the thread once run() returns, before the server goes away.
std::thread stop_on_signal(Server& server) {
  return std::thread([&server] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig = 0;
    sigwait(&set, &sig);
    server.stop();
  });
}

// Expires uploads idle for an hour and, every gc_interval seconds (0: never), collects garbage.
void maintain(Store& store, Registry& registry, int gc_interval) {
  std::thread([&store, &registry, gc_interval] {
    auto last_gc = std::chrono::steady_clock::now();
    for (;;) {
      std::this_thread::sleep_for(std::chrono::seconds(std::clamp(gc_interval, 1, 60)));
      registry.uploads().expire(std::chrono::hours(1));
      if (gc_interval <= 0 ||
          std::chrono::steady_clock::now() - last_gc < std::chrono::seconds(gc_interval))
        continue;
      last_gc = std::chrono::steady_clock::now();
      if (auto r = store.collect_garbage(); !r) spdlog::warn("gc: {}", r.error().message());
    }
  }).detach();
}

// --htpasswd or --token-*: who may do what (auth.h); neither: everyone.
Result<std::shared_ptr<const Authenticator>> make_authenticator(const std::string& htpasswd_file,
                                                                TokenAuthOptions token,
                                                                const std::string& bundle_file) {
  bool token_auth = !token.realm.empty() || !token.service.empty() || !token.issuer.empty() ||
                    !bundle_file.empty();
  if (token_auth && !htpasswd_file.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "--htpasswd and --token-* are exclusive: choose one way to authenticate");
  if (!htpasswd_file.empty())
    return std::shared_ptr<const Authenticator>(basic_authenticator(TRY(read_file(htpasswd_file))));
  if (!token_auth) return std::shared_ptr<const Authenticator>();
  if (bundle_file.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "--token-cert-bundle is required with token authentication");
  token.cert_bundle = TRY(read_file(bundle_file));
  return std::shared_ptr<const Authenticator>(
      TRY_CTX(token_authenticator(std::move(token)), "{}", bundle_file));
}

int serve(const std::string& root, const std::string& listen, ServerOptions options,
          int gc_interval) {
  auto hp = parse_listen(listen);
  if (!hp) return fail(hp.error());
  options.host = hp->first, options.port = hp->second;
  auto store = Store::create(root);
  if (!store) return fail(store.error());
  Registry registry(**store);
  auto server = Server::create(registry, options);
  if (!server) return fail(server.error());
  std::thread signals = stop_on_signal(**server);
  maintain(**store, registry, gc_interval);
  std::printf("ready %s://%s:%u\n", (*server)->tls() ? "https" : "http", options.host.c_str(),
              unsigned((*server)->port()));
  std::fflush(stdout);
  (*server)->run();  // returns only after stop()
  signals.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  CLI::App app{"vireo-registry: OCI distribution registry"};
  std::string root, listen = "127.0.0.1:5000", htpasswd, log_level = "info";
  ServerOptions options;
  int gc_interval = 0;
  app.add_option("--root", root, "storage directory")->required();
  app.add_option("--listen", listen, "HOST:PORT to listen on (port 0 picks one)");
  app.add_option("--tls-cert", options.tls_cert, "TLS certificate chain (PEM)");
  app.add_option("--tls-key", options.tls_key, "TLS private key (PEM)");
  app.add_option("--htpasswd", htpasswd, "htpasswd file (bcrypt) for basic authentication");
  TokenAuthOptions token;
  std::string token_bundle;
  app.add_option("--token-realm", token.realm, "token server URL for bearer-token authentication");
  app.add_option("--token-service", token.service, "service name (the tokens' audience)");
  app.add_option("--token-issuer", token.issuer, "issuer the tokens must name");
  app.add_option("--token-cert-bundle", token_bundle,
                 "PEM certificates whose keys sign the tokens");
  app.add_option("--gc-interval", gc_interval, "seconds between garbage collections (0: off)");
  app.add_option("--log-level", log_level, "debug, info, warn or error");
  auto* gc = app.add_subcommand("gc",
                                "remove blobs no repository references, then exit (run it "
                                "while no server writes the root; --gc-interval is the online GC)");
  gc->fallthrough();
  CLI11_PARSE(app, argc, argv);
  init_logging(log_level == "debug"   ? LogLevel::kDebug
               : log_level == "warn"  ? LogLevel::kWarn
               : log_level == "error" ? LogLevel::kError
                                      : LogLevel::kInfo);
  if (options.tls_cert.empty() != options.tls_key.empty())
    return fail(Error(ErrorCode::kInvalidArgument, "--tls-cert and --tls-key go together"));
  if (gc->parsed()) {
    auto store = Store::create(root, StaleUploads::kKeep);
    if (!store) return fail(store.error());
    auto stats = (*store)->collect_garbage();
    if (!stats) return fail(stats.error());
    std::printf("removed %zu blobs (%llu bytes)\n", stats->blobs_removed,
                (unsigned long long)stats->bytes_removed);
    return 0;
  }
  auto auth = make_authenticator(htpasswd, token, token_bundle);
  if (!auth) return fail(auth.error());
  options.auth = *auth;
  return serve(root, listen, options, gc_interval);
}
