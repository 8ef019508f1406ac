#pragma once
// Live migration between two QEMUs over QMP: the destination was started with the same
// devices and `-incoming defer`; the source runs the guest. RAM is copied while the guest runs
// (pre-copy) and the last dirty pages while it is stopped, within the downtime limit; then the
// destination runs the guest and the source is left paused ("postmigrate") for its owner to end.
// Disks: shared storage (both open the same NBD export or file), or copied while the guest runs:
// the destination serves its own (empty) disks over NBD, the source mirrors each disk into them
// (full copy, then every new write twice) until the RAM migration switched over.
#include <chrono>
#include <cstdint>
#include <functional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "compute/qmp_client.h"

namespace vireo::compute {

// TLS between hosts for the migration stream and the disk copy: a QEMU tls-creds-x509 object on
// each side (add_tls_creds). Empty creds: plain.
struct MigrationTls {
  std::string creds;     // the object's id
  std::string hostname;  // source: the name the destination's certificate must carry
};

struct MigrationOptions {
  std::chrono::milliseconds downtime_limit{300};  // Cloud Hypervisor's default target
  uint64_t max_bandwidth = 8ull << 30;            // bytes/s; QEMU's default is 128 MiB/s
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
  // Runs with the guest stopped on the source, before the destination takes over (QEMU's
  // pause-before-switchover): where mirrored disks are brought to their last write.
  std::function<Result<void>()> before_switchover;
  // Requested: the migration is cancelled (kCancelled), the guest keeps running on the source.
  std::stop_token stop;
  MigrationTls tls;
};

struct MigrationStats {
  std::string status;        // "completed", "failed", "cancelled"
  uint64_t total_ms = 0;     // QEMU's total-time
  uint64_t downtime_ms = 0;  // QEMU's measured downtime (guest stopped on both sides)
  uint64_t setup_ms = 0;
  uint64_t ram_transferred = 0;
  uint64_t ram_total = 0;
  uint64_t dirty_sync_count = 0;  // pre-copy passes
  std::string error;              // QEMU's error-desc when failed
};

// The stats in QMP query-migrate's answer (separate for the unit tests).
MigrationStats parse_query_migrate(const Json& reply);

// Makes QEMU's TLS credentials object id from the PEM files in dir, read once here (dir may go
// afterwards). Each side presents its certificate and verifies the other's against ca-cert.pem:
// the destination (server) presents server-cert.pem/server-key.pem and trusts the source's
// certificate, the source (client) presents client-cert.pem/client-key.pem (make_tls_identity)
// and trusts the destination's CA. QEMU's own sanity checks of the files are off: they refuse
// the self-signed certificates vireod accepts.
[[nodiscard]] Result<void> add_tls_creds(QmpClient& qmp, const std::string& id,
                                         const std::string& dir, bool server);

// "tcp:HOST:PORT", an IPv6 host in brackets (as QEMU's migration and NBD addresses take it).
std::string tcp_uri(const std::string& host, std::string_view port);

// On the destination: listen for the migration stream on uri ("unix:PATH" or "tcp:HOST:PORT";
// port 0: any free one, which incoming_uri then tells), over TLS with tls.creds.
[[nodiscard]] Result<void> start_incoming(QmpClient& destination, const std::string& uri,
                                          const MigrationTls& tls = {});
[[nodiscard]] Result<std::string> incoming_uri(QmpClient& destination);

// On the source: sets the downtime limit and bandwidth, starts the migration to uri and waits
// until it completed (the stats), failed or was cancelled (an error with QEMU's reason). On
// timeout it cancels: the guest keeps running on the source.
[[nodiscard]] Result<MigrationStats> migrate(QmpClient& source, const std::string& uri,
                                             const MigrationOptions& options = {});

// Cancels a running migration; the guest keeps running on the source.
[[nodiscard]] Result<void> cancel_migration(QmpClient& source);

// Disk copy. disk_ids are the -device ids (disk0, ...) whose format nodes are "<id>-fmt".
// Destination: an NBD server on a unix socket exporting each disk writable as "<id>".
[[nodiscard]] Result<void> serve_disks(QmpClient& destination, const std::string& nbd_socket,
                                       const std::vector<std::string>& disk_ids);
// The same on a TCP port of host that the system picks; returns "tcp:HOST:PORT".
[[nodiscard]] Result<std::string> serve_disks_tcp(QmpClient& destination, const std::string& host,
                                                  const std::vector<std::string>& disk_ids,
                                                  const MigrationTls& tls = {});
// Source: mirrors every disk into the destination's export (nbd_socket: a unix socket path or
// "tcp:HOST:PORT") and waits until all are in sync
// (BLOCK_JOB_READY: from then on each guest write goes to both). On failure or timeout the
// mirrors are cancelled and nothing changed for the guest.
[[nodiscard]] Result<void> mirror_disks(QmpClient& source, const std::string& nbd_socket,
                                        const std::vector<std::string>& disk_ids,
                                        std::chrono::milliseconds timeout,
                                        std::stop_token stop = {}, const MigrationTls& tls = {});
// With the guest stopped on the source (before_switchover): ends the mirrors without pivoting —
// each first copies what is left, so both sides hold the same data. Also how mirrors are ended
// when the migration fails (the source keeps its disks).
[[nodiscard]] Result<void> finish_mirrors(QmpClient& source,
                                          const std::vector<std::string>& disk_ids);
// Destination, once the mirrors ended: removes the exports and stops the NBD server.
[[nodiscard]] Result<void> stop_serving_disks(QmpClient& destination,
                                              const std::vector<std::string>& disk_ids);

}  // namespace vireo::compute
