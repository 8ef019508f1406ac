#include "compute/vm_stats.h"

#include <unistd.h>

#include <charconv>
#include <limits>

#include "base/file.h"
#include "base/strings.h"

namespace vireo::compute {

namespace {

// A counter from QEMU JSON: absent, negative or "unset" (QEMU prints -1 for a stat the guest
// never reported) is nullopt.
std::optional<uint64_t> counter(const Json& object, const char* key) {
  if (!object.is_object() || !object.contains(key)) return std::nullopt;
  const Json& v = object[key];
  if (v.is_number_unsigned()) {
    uint64_t n = v.get<uint64_t>();
    if (n == std::numeric_limits<uint64_t>::max()) return std::nullopt;
    return n;
  }
  return std::nullopt;
}

std::optional<uint64_t> parse_u64(std::string_view text) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return n;
}

uint64_t counter_or_zero(const Json& object, const char* key) {
  return counter(object, key).value_or(0);
}

Result<uint64_t> thread_cpu_ns(pid_t pid, std::optional<pid_t> tid) {
  std::string path =
      tid ? fmt::format("/proc/{}/task/{}/stat", pid, *tid) : fmt::format("/proc/{}/stat", pid);
  return parse_proc_stat_cpu_ns(TRY(read_file(path)));
}

Result<uint64_t> rss_bytes(pid_t pid) {
  std::string status = TRY(read_file(fmt::format("/proc/{}/status", pid)));
  for (const std::string& line : split(status, '\n')) {
    if (!line.starts_with("VmRSS:") || !line.ends_with(" kB")) continue;  // "VmRSS:  1234 kB"
    auto kib = parse_u64(trim(std::string_view(line).substr(6, line.size() - 9)));
    if (kib) return *kib * 1024;
  }
  return make_error(ErrorCode::kIo, "no VmRSS in /proc/{}/status", pid);
}

}  // namespace

Result<uint64_t> parse_proc_stat_cpu_ns(const std::string& stat_line) {
  // The command name (field 2) may hold spaces and parentheses: fields restart after the last ')'.
  auto paren = stat_line.rfind(')');
  if (paren == std::string::npos)
    return make_error(ErrorCode::kInvalidArgument, "not a /proc stat line");
  std::vector<std::string> words;
  for (auto& f : split(std::string_view(stat_line).substr(paren + 1), ' '))
    if (!f.empty()) words.push_back(std::move(f));
  // words[0] is the state (field 3): utime is field 14, stime field 15.
  if (words.size() < 13) return make_error(ErrorCode::kInvalidArgument, "short /proc stat line");
  auto utime = parse_u64(words[11]), stime = parse_u64(trim(words[12]));
  if (!utime || !stime) return make_error(ErrorCode::kInvalidArgument, "bad /proc stat times");
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  return (*utime + *stime) * (1'000'000'000ull / uint64_t(ticks > 0 ? ticks : 100));
}

std::vector<DiskStats> parse_blockstats(const Json& reply) {
  std::vector<DiskStats> out;
  if (!reply.is_array()) return out;
  for (const auto& entry : reply) {
    if (!entry.is_object()) continue;
    // -blockdev backends have no "device"; "qdev" is /machine/peripheral/ID/virtio-backend.
    std::string id = entry.value("qdev", "");
    if (id.starts_with("/machine/peripheral/")) id.erase(0, 20);
    if (auto slash = id.find('/'); slash != std::string::npos) id.resize(slash);
    if (id.empty()) id = entry.value("device", "");
    const Json stats = entry.value("stats", Json::object());
    out.push_back({.id = id,
                   .read_bytes = counter_or_zero(stats, "rd_bytes"),
                   .written_bytes = counter_or_zero(stats, "wr_bytes"),
                   .read_ops = counter_or_zero(stats, "rd_operations"),
                   .write_ops = counter_or_zero(stats, "wr_operations"),
                   .flush_ops = counter_or_zero(stats, "flush_operations")});
  }
  return out;
}

GuestMemory parse_guest_stats(const Json& reply) {
  GuestMemory m;
  if (!reply.is_object() || counter_or_zero(reply, "last-update") == 0) return m;
  const Json stats = reply.value("stats", Json::object());
  m.total = counter(stats, "stat-total-memory");
  m.free = counter(stats, "stat-free-memory");
  m.available = counter(stats, "stat-available-memory");
  return m;
}

Result<VmStats> collect_stats(pid_t pid, QmpClient& qmp) {
  VmStats s;
  s.cpu_ns = TRY(thread_cpu_ns(pid, std::nullopt));
  s.rss_bytes = TRY(rss_bytes(pid));
  Json cpus = TRY(qmp.execute("query-cpus-fast"));
  for (const auto& cpu : cpus) {
    auto tid = counter(cpu, "thread-id");
    auto ns = tid ? thread_cpu_ns(pid, pid_t(*tid)) : Result<uint64_t>(0);
    s.vcpu_ns.push_back(ns ? *ns : 0);  // a thread gone between the two reads counts 0
  }
  s.disks = parse_blockstats(TRY(qmp.execute("query-blockstats")));
  // A VM without a balloon device (defined before it existed) answers DeviceNotActive.
  if (auto balloon = qmp.execute("query-balloon")) {
    s.balloon = counter(*balloon, "actual");
    auto guest = qmp.execute("qom-get", {{"path", kBalloonPath}, {"property", "guest-stats"}});
    if (guest) s.guest = parse_guest_stats(*guest);
  }
  return s;
}

Json to_json(const VmStats& s) {
  Json disks = Json::array();
  for (const auto& d : s.disks)
    disks.push_back({{"id", d.id},
                     {"read_bytes", d.read_bytes},
                     {"written_bytes", d.written_bytes},
                     {"read_ops", d.read_ops},
                     {"write_ops", d.write_ops},
                     {"flush_ops", d.flush_ops}});
  Json guest = Json::object();
  if (s.guest.total) guest["total"] = *s.guest.total;
  if (s.guest.free) guest["free"] = *s.guest.free;
  if (s.guest.available) guest["available"] = *s.guest.available;
  Json memory = {{"rss", s.rss_bytes}, {"guest", guest}};
  if (s.balloon) memory["balloon"] = *s.balloon;
  return Json{{"cpu_ns", s.cpu_ns}, {"vcpu_ns", s.vcpu_ns}, {"memory", memory}, {"disks", disks}};
}

Result<void> set_balloon_polling(QmpClient& qmp, int interval_s) {
  TRY(qmp.execute("qom-set", {{"path", kBalloonPath},
                              {"property", "guest-stats-polling-interval"},
                              {"value", interval_s}}));
  return {};
}

Result<void> set_balloon_target(QmpClient& qmp, uint64_t bytes) {
  TRY(qmp.execute("balloon", {{"value", bytes}}));
  return {};
}

}  // namespace vireo::compute
