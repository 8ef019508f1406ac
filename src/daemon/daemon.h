#pragma once
// Daemon: vireod composed from the libraries — the state store, the HTTP server, operations,
// events, and the resource kinds. Owns one io_context, run on the thread that calls run().
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"

namespace vireo::daemon {

struct DaemonConfig {
  std::filesystem::path root = "/var/lib/vireo";
  std::string socket = "/run/vireo/vireo.sock";
  std::string listen;  // "HOST:PORT" for TCP+TLS; empty: Unix socket only
  std::string tls_cert;
  std::string tls_key;
  size_t body_limit = 16 << 20;
  bool debug_api = false;   // /1.0/debug/*: test hooks, off in production
  std::string vxlan_local;  // this host's VTEP address for the vireo-netd it starts
};

class Daemon {
 public:
  static Result<std::unique_ptr<Daemon>> create(DaemonConfig config);
  ~Daemon();

  // Serves until stop(), SIGTERM or SIGINT. on_ready runs once every listener is up.
  Result<void> run(const std::function<void()>& on_ready = {});
  // Thread-safe.
  void stop();
  // The bound TCP port (useful with port 0), 0 without --listen.
  uint16_t tls_port() const;

  struct Impl;

 private:
  explicit Daemon(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Path of the database inside a state root.
std::filesystem::path database_path(const std::filesystem::path& root);

}  // namespace vireo::daemon
