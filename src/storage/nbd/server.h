#pragma once
// NbdServer: serves BlockDevices as NBD exports over Unix and TCP sockets (newstyle fixed
// handshake; see protocol.h for what is negotiated). A listener given a TlsConfig requires TLS
// (NBD_OPT_STARTTLS, see tls.h); the others are plain.
//
// One thread per connection reads requests, runs them on the device and writes each reply with
// one writev, straight from the read buffer. A client that sends garbage or drops mid-request
// loses only its own connection. Several connections may serve one export (CAN_MULTI_CONN:
// the devices are thread-safe and flush covers every connection's writes).
//
// Thread safety: listen_*() before run(); stop() from any thread (also from a signal-handling
// thread); run() returns once every connection has ended.
#include <atomic>
#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "storage/block_device.h"
#include "storage/nbd/tls.h"

namespace vireo::storage::nbd {

struct ExportConfig {
  std::string name;
  std::shared_ptr<BlockDevice> device;
  bool read_only = false;
  std::string description;
};

class NbdServer {
 public:
  // exports may be empty when they are added later with add_export().
  [[nodiscard]] static Result<std::unique_ptr<NbdServer>> create(std::vector<ExportConfig> exports);
  ~NbdServer();

  // Exports can change while the server runs (vireo-storaged adds and removes volumes). A
  // connection that already entered transmission keeps its device until it ends.
  [[nodiscard]] Result<void> add_export(ExportConfig config);
  // Replaces the device of an existing export (new connections see the new one).
  [[nodiscard]] Result<void> replace_export(ExportConfig config);
  bool remove_export(std::string_view name);
  std::vector<std::string> export_names() const;

  // Replaces a stale socket file at path; the socket is made mode 0660. An enabled tls makes
  // the listener require TLS; its files are loaded here (a bad file fails the call).
  [[nodiscard]] Result<void> listen_unix(const std::filesystem::path& path,
                                         const TlsConfig& tls = {});
  // Port 0 picks a free port; returns the bound "host:port".
  [[nodiscard]] Result<std::string> listen_tcp(const std::string& host, uint16_t port,
                                               const TlsConfig& tls = {});
  // Accepts and serves connections until stop().
  [[nodiscard]] Result<void> run();
  void stop();
  // Serves one already connected socket on the calling thread (tests, inetd-style use), plain.
  void serve(Fd socket);

  size_t active_connections() const { return active_.load(); }

 private:
  struct Connection {
    std::thread thread;
    int fd = -1;
    std::atomic<bool> done{false};
  };
  NbdServer() = default;
  struct Listener {
    Fd fd;
    std::shared_ptr<const TlsContext> tls;  // null: plain
  };
  void reap(bool all);
  std::shared_ptr<const ExportConfig> find_export(std::string_view name) const;
  friend class NbdSession;

  mutable std::mutex exports_mu_;  // guards exports_
  std::vector<std::shared_ptr<const ExportConfig>> exports_;
  std::vector<Listener> listeners_;
  std::vector<std::filesystem::path> unix_paths_;
  Fd stop_event_;
  std::mutex mu_;
  std::list<Connection> connections_;
  std::atomic<size_t> active_{0};
  std::atomic<bool> stopping_{false};
};

// Parses a listen address "HOST:PORT", "[V6]:PORT" or ":PORT" (any address).
[[nodiscard]] Result<std::pair<std::string, uint16_t>> parse_host_port(std::string_view text);

}  // namespace vireo::storage::nbd
