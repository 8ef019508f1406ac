#include "compute/migration.h"

#include <netdb.h>
#include <sys/socket.h>

#include <thread>

#include "base/fd.h"

namespace vireo::compute {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPollInterval = std::chrono::milliseconds(20);

uint64_t number(const Json& object, const char* key) {
  return object.is_object() && object.contains(key) && object[key].is_number_unsigned()
             ? object[key].get<uint64_t>()
             : 0;
}

bool finished(const std::string& status) {
  return status == "completed" || status == "failed" || status == "cancelled";
}

}  // namespace

MigrationStats parse_query_migrate(const Json& reply) {
  MigrationStats s;
  if (!reply.is_object()) return s;
  s.status = reply.value("status", "");
  s.total_ms = number(reply, "total-time");
  s.downtime_ms = number(reply, "downtime");
  s.setup_ms = number(reply, "setup-time");
  const Json ram = reply.value("ram", Json::object());
  s.ram_transferred = number(ram, "transferred");
  s.ram_total = number(ram, "total");
  s.dirty_sync_count = number(ram, "dirty-sync-count");
  if (reply.contains("error-desc") && reply["error-desc"].is_string())
    s.error = reply["error-desc"].get<std::string>();
  return s;
}

Result<void> add_tls_creds(QmpClient& qmp, const std::string& id, const std::string& dir,
                           bool server) {
  // A failed earlier attempt may have left one behind.
  (void)qmp.execute("object-del", {{"id", id}});
  TRY_CTX(qmp.execute("object-add", {{"qom-type", "tls-creds-x509"},
                                     {"id", id},
                                     {"dir", dir},
                                     {"endpoint", server ? "server" : "client"},
                                     {"verify-peer", true},
                                     {"sanity-check", false}}),
          "TLS credentials for the migration");
  return {};
}

Result<void> start_incoming(QmpClient& destination, const std::string& uri,
                            const MigrationTls& tls) {
  if (!tls.creds.empty())
    TRY(destination.execute("migrate-set-parameters", {{"tls-creds", tls.creds}}));
  TRY(destination.execute("migrate-incoming", {{"uri", uri}}));
  return {};
}

std::string tcp_uri(const std::string& host, std::string_view port) {
  const bool v6 = host.find(':') != std::string::npos && !host.starts_with('[');
  return fmt::format("tcp:{}{}{}:{}", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

Result<std::string> incoming_uri(QmpClient& destination) {
  Json info = TRY(destination.execute("query-migrate"));
  for (const auto& a : info.value("socket-address", Json::array()))
    if (a.value("type", "") == "inet") return tcp_uri(a.value("host", ""), a.value("port", ""));
  return make_error(ErrorCode::kUnavailable, "QEMU reports no TCP address it listens on");
}

Result<MigrationStats> migrate(QmpClient& source, const std::string& uri,
                               const MigrationOptions& options) {
  Json parameters = {{"downtime-limit", options.downtime_limit.count()},
                     {"max-bandwidth", options.max_bandwidth},
                     {"tls-creds", options.tls.creds}};  // "": plain
  if (!options.tls.creds.empty()) parameters["tls-hostname"] = options.tls.hostname;
  TRY(source.execute("migrate-set-parameters", parameters));
  TRY(source.execute("migrate", {{"uri", uri}}));
  const auto deadline = Clock::now() + options.timeout;
  for (;;) {
    // query-migrate rather than the MIGRATION event: it also carries the stats, and a poll
    // every 20 ms costs nothing next to a migration.
    MigrationStats stats = parse_query_migrate(TRY(source.execute("query-migrate")));
    if (stats.status == "completed") return stats;
    if (stats.status == "pre-switchover") {
      if (auto r = options.before_switchover(); !r) {
        (void)cancel_migration(source);
        return std::unexpected(std::move(r.error()).with_context("migration cancelled"));
      }
      TRY(source.execute("migrate-continue", {{"state", "pre-switchover"}}));
    }
    if (finished(stats.status))
      return make_error(ErrorCode::kUnavailable, "migration {}{}; the VM runs on the source",
                        stats.status, stats.error.empty() ? "" : ": " + stats.error);
    if (options.stop.stop_requested()) {
      (void)cancel_migration(source);
      return make_error(ErrorCode::kCancelled, "migration cancelled; the VM runs on the source");
    }
    if (Clock::now() > deadline) {
      (void)cancel_migration(source);
      return make_error(ErrorCode::kTimeout,
                        "migration did not converge in {} s (the guest dirties memory faster "
                        "than it can be sent?); cancelled, the VM runs on the source",
                        std::chrono::duration_cast<std::chrono::seconds>(options.timeout).count());
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

Result<void> cancel_migration(QmpClient& source) {
  TRY(source.execute("migrate_cancel"));
  return {};
}

namespace {

Result<void> export_disks(QmpClient& destination, const std::vector<std::string>& disk_ids) {
  for (const auto& id : disk_ids)
    TRY(destination.execute("block-export-add", {{"type", "nbd"},
                                                 {"id", "export-" + id},
                                                 {"node-name", id + "-fmt"},
                                                 {"name", id},
                                                 {"writable", true}}));
  return {};
}

// A listening TCP socket on host, any free port.
Result<Fd> listen_tcp(const std::string& host) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), "0", &hints, &found); rc != 0)
    return make_error(ErrorCode::kInvalidArgument, "listen on {}: {}", host, gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(found, freeaddrinfo);
  Fd fd(::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || ::bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0 || ::listen(fd.get(), 4) != 0)
    return errno_error("listen on " + host);
  return fd;
}

uint16_t port_of(int fd) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&a)->sin6_port
                                       : reinterpret_cast<sockaddr_in*>(&a)->sin_port);
}

}  // namespace

Result<void> serve_disks(QmpClient& destination, const std::string& nbd_socket,
                         const std::vector<std::string>& disk_ids) {
  TRY(destination.execute("nbd-server-start",
                          {{"addr", {{"type", "unix"}, {"data", {{"path", nbd_socket}}}}}}));
  return export_disks(destination, disk_ids);
}

Result<std::string> serve_disks_tcp(QmpClient& destination, const std::string& host,
                                    const std::vector<std::string>& disk_ids,
                                    const MigrationTls& tls) {
  // QEMU cannot tell which port it chose: it gets a socket listening already.
  Fd listener = TRY(listen_tcp(host));
  TRY(destination.execute_with_fd("getfd", {{"fdname", "vireo-nbd-listen"}}, listener.get()));
  Json start = {{"addr", {{"type", "fd"}, {"data", {{"str", "vireo-nbd-listen"}}}}}};
  if (!tls.creds.empty()) start["tls-creds"] = tls.creds;
  TRY(destination.execute("nbd-server-start", start));
  TRY(export_disks(destination, disk_ids));
  return tcp_uri(host, std::to_string(port_of(listener.get())));
}

namespace {

// The mirror jobs still running (not ready yet) among ours, from query-block-jobs; an error
// when one of them failed or vanished.
Result<size_t> mirrors_not_ready(QmpClient& source, const std::vector<std::string>& disk_ids) {
  Json jobs = TRY(source.execute("query-block-jobs"));
  size_t waiting = 0;
  for (const auto& id : disk_ids) {
    const Json* job = nullptr;
    for (const auto& j : jobs)
      if (j.is_object() && j.value("device", "") == "mirror-" + id) job = &j;
    if (!job)
      return make_error(ErrorCode::kUnavailable, "the copy of disk {} stopped (see the QEMU log)",
                        id);
    if (job->contains("error") && (*job)["error"].is_string())
      return make_error(ErrorCode::kIo, "copying disk {}: {}", id,
                        (*job)["error"].get<std::string>());
    if (!job->value("ready", false)) ++waiting;
  }
  return waiting;
}

// "tcp:HOST:PORT" ([v6] allowed) or a unix socket path, as blockdev-add's nbd "server".
Result<Json> nbd_server_address(const std::string& where) {
  if (!where.starts_with("tcp:")) return Json{{"type", "unix"}, {"path", where}};
  std::string rest = where.substr(4);
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon + 1 == rest.size())
    return make_error(ErrorCode::kInvalidArgument, "NBD address {} has no port", where);
  std::string host = rest.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return Json{{"type", "inet"}, {"host", host}, {"port", rest.substr(colon + 1)}};
}

void cancel_mirrors(QmpClient& source, const std::vector<std::string>& disk_ids) {
  for (const auto& id : disk_ids) {
    (void)source.execute("block-job-cancel", {{"device", "mirror-" + id}, {"force", true}});
    (void)source.execute("blockdev-del", {{"node-name", "mirror-target-" + id}});
  }
}

}  // namespace

Result<void> mirror_disks(QmpClient& source, const std::string& nbd_socket,
                          const std::vector<std::string>& disk_ids,
                          std::chrono::milliseconds timeout, std::stop_token stop,
                          const MigrationTls& tls) {
  const Json server = TRY(nbd_server_address(nbd_socket));
  for (const auto& id : disk_ids) {
    Json target = {{"driver", "nbd"},
                   {"node-name", "mirror-target-" + id},
                   {"server", server},
                   {"export", id}};
    if (!tls.creds.empty()) {
      target["tls-creds"] = tls.creds;
      target["tls-hostname"] = tls.hostname;
    }
    auto added = source.execute("blockdev-add", target);
    Result<Json> started =
        added ? source.execute("blockdev-mirror", {{"job-id", "mirror-" + id},
                                                   {"device", id + "-fmt"},
                                                   {"target", "mirror-target-" + id},
                                                   {"sync", "full"},
                                                   {"copy-mode", "write-blocking"}})
              : added;
    if (!started) {
      cancel_mirrors(source, disk_ids);
      return std::unexpected(std::move(started.error()).with_context("copy disk " + id));
    }
  }
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto waiting = mirrors_not_ready(source, disk_ids);
    if (waiting && *waiting == 0) return {};
    if (stop.stop_requested()) {
      cancel_mirrors(source, disk_ids);
      return make_error(ErrorCode::kCancelled, "the disk copy was cancelled");
    }
    if (!waiting || Clock::now() > deadline) {
      cancel_mirrors(source, disk_ids);
      if (!waiting) return std::unexpected(waiting.error());
      return make_error(ErrorCode::kTimeout, "the disks were not copied in {} s; cancelled",
                        std::chrono::duration_cast<std::chrono::seconds>(timeout).count());
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

Result<void> finish_mirrors(QmpClient& source, const std::vector<std::string>& disk_ids) {
  // A ready mirror that is cancelled completes without pivoting: the source keeps its disk.
  for (const auto& id : disk_ids) {
    TRY(source.execute("block-job-cancel", {{"device", "mirror-" + id}}));
  }
  for (const auto& id : disk_ids) {
    // The job goes away once cancelled; the target node can then be removed.
    for (int i = 0; i < 250; ++i) {
      auto jobs = source.execute("query-block-jobs");
      bool present = false;
      if (jobs)
        for (const auto& j : *jobs) present = present || j.value("device", "") == "mirror-" + id;
      if (!present) break;
      std::this_thread::sleep_for(kPollInterval);
    }
    (void)source.execute("blockdev-del", {{"node-name", "mirror-target-" + id}});
  }
  return {};
}

Result<void> stop_serving_disks(QmpClient& destination, const std::vector<std::string>& disk_ids) {
  // "hard": a source whose mirror node lingers still holds a connection; the copy is over.
  for (const auto& id : disk_ids)
    TRY(destination.execute("block-export-del", {{"id", "export-" + id}, {"mode", "hard"}}));
  TRY(destination.execute("nbd-server-stop"));
  return {};
}

}  // namespace vireo::compute
