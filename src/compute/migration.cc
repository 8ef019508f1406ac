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
    if (finished(stats.status))
      return make_error(ErrorCode::kUnavailable, "migration {}{}; the VM runs on the source",
                        stats.status, stats.error.empty() ? "" : ": " + stats.error);
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

}  // namespace vireo::compute
