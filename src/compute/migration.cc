#include "compute/migration.h"

#include <thread>

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

Result<void> start_incoming(QmpClient& destination, const std::string& uri) {
  TRY(destination.execute("migrate-incoming", {{"uri", uri}}));
  return {};
}

Result<MigrationStats> migrate(QmpClient& source, const std::string& uri,
                               const MigrationOptions& options) {
  TRY(source.execute("migrate-set-parameters", {{"downtime-limit", options.downtime_limit.count()},
                                                {"max-bandwidth", options.max_bandwidth}}));
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

Result<void> serve_disks(QmpClient& destination, const std::string& nbd_socket,
                         const std::vector<std::string>& disk_ids) {
  TRY(destination.execute("nbd-server-start",
                          {{"addr", {{"type", "unix"}, {"data", {{"path", nbd_socket}}}}}}));
  for (const auto& id : disk_ids)
    TRY(destination.execute("block-export-add", {{"type", "nbd"},
                                                 {"id", "export-" + id},
                                                 {"node-name", id + "-fmt"},
                                                 {"name", id},
                                                 {"writable", true}}));
  return {};
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

void cancel_mirrors(QmpClient& source, const std::vector<std::string>& disk_ids) {
  for (const auto& id : disk_ids) {
    (void)source.execute("block-job-cancel", {{"device", "mirror-" + id}, {"force", true}});
    (void)source.execute("blockdev-del", {{"node-name", "mirror-target-" + id}});
  }
}

}  // namespace

Result<void> mirror_disks(QmpClient& source, const std::string& nbd_socket,
                          const std::vector<std::string>& disk_ids,
                          std::chrono::milliseconds timeout, std::stop_token stop) {
  for (const auto& id : disk_ids) {
    auto added =
        source.execute("blockdev-add", {{"driver", "nbd"},
                                        {"node-name", "mirror-target-" + id},
                                        {"server", {{"type", "unix"}, {"path", nbd_socket}}},
                                        {"export", id}});
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
