#pragma once
// Storaged: the body of vireo-storaged, the one long-lived storage process per host. It owns the
// pools defined in its state directory (one JSON file per pool), serves every volume of every
// pool over NBD on one Unix socket (export name "POOL/VOL") and optionally on a TCP listener
// (TLS required when credentials are given), and takes control requests on a
// second Unix socket: one JSON object per line in, one JSON object per line out, errors as
// {"ok": false, "error": "...", "code": "..."} (the shape of vireo-netd's control socket).
//
// It keeps one open device per volume, shared by every NBD connection to it, and it keeps
// serving NBD while control clients (vireod) come and go: nothing in a control connection owns
// an export.
//
// Threads: the control loop (run()) handles requests one at a time; the NBD server has its own
// accept thread and one thread per connection. handle() is called only from the control thread.
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "base/fd.h"
#include "base/json.h"
#include "base/line_server.h"
#include "storage/nbd/server.h"
#include "storage/pool/pool.h"

namespace vireo::storage {

struct StoragedOptions {
  std::filesystem::path state_dir;       // pools/NAME.json
  std::filesystem::path control_socket;  // JSON lines
  std::filesystem::path nbd_socket;      // every export
  std::string nbd_listen;                // optional TCP "HOST:PORT" for the same exports
  nbd::TlsConfig nbd_tls;                // for nbd_listen (the Unix socket stays plain)
};

class Storaged {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Storaged>> create(const StoragedOptions& options);
  ~Storaged();

  // Serves control clients until SIGTERM or SIGINT (or stop()).
  [[nodiscard]] Result<void> run();
  void stop();
  // One request, one reply (the control protocol without the socket).
  Json handle(const Json& request);
  std::string handle_line(std::string_view line);
  // The bound "host:port" of the TCP listener; empty without one.
  const std::string& nbd_tcp_address() const { return tcp_address_; }

 private:
  struct PoolEntry {
    PoolConfig config;
    std::unique_ptr<Pool> pool;  // null when the pool could not be opened (see error)
    std::string error;
    std::map<std::string, std::shared_ptr<BlockDevice>> devices;  // exported volumes
  };
  Storaged() = default;
  Result<Json> dispatch(const std::string& op, const Json& r);
  void load_pools();
  Result<PoolEntry*> entry(const Json& r, const char* key = "pool");
  Result<Pool*> pool(PoolEntry& e);
  Result<void> export_volume(PoolEntry& e, const std::string& vol);
  void unexport_volume(PoolEntry& e, const std::string& vol);
  Result<void> flush_devices(PoolEntry& e);
  Json volume_json(const PoolEntry& e, const VolumeInfo& v) const;
  std::filesystem::path def_path(const std::string& pool) const;

  Result<Json> pool_create(const Json& r);
  Result<Json> pool_list();
  Result<Json> pool_show(const Json& r);
  Result<Json> pool_remove(const Json& r);
  Result<Json> pool_check(const Json& r);
  Result<Json> vol_create(const Json& r);
  Result<Json> vol_list(const Json& r);
  Result<Json> vol_show(const Json& r);
  Result<Json> vol_remove(const Json& r);
  Result<Json> vol_resize(const Json& r);
  Result<Json> vol_copy(const Json& r, VolumeAccess access);
  Result<Json> vol_restore(const Json& r);
  Result<Json> vol_import(const Json& r);
  Result<Json> vol_export(const Json& r);

  StoragedOptions options_;
  Fd lock_;  // flock on STATE/lock
  std::map<std::string, PoolEntry> pools_;
  std::unique_ptr<nbd::NbdServer> nbd_;
  std::string tcp_address_;
  std::thread nbd_thread_;
  Fd epoll_;
  Fd listener_;
  Fd signals_;
  Fd stop_event_;
  std::unique_ptr<LineClients> clients_;  // the control socket's clients
  bool stop_ = false;
};

}  // namespace vireo::storage
