#include "monitor/oom.h"

#include <unistd.h>

#include <charconv>
#include <vector>

#include "monitor/process.h"

namespace vireo::monitor {

namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    size_t at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

bool has_item(std::string_view list, std::string_view item) {
  for (auto i : split(list, ','))
    if (i == item) return true;
  return false;
}

// Mount point of the cgroup2 hierarchy, or of the v1 hierarchy that has `controller`.
std::string cgroup_mount(std::string_view mountinfo, std::string_view controller) {
  for (auto line : split(mountinfo, '\n')) {
    size_t dash = line.find(" - ");
    if (dash == std::string_view::npos) continue;
    auto fields = split(line.substr(0, dash), ' ');
    auto tail = split(line.substr(dash + 3), ' ');
    if (fields.size() < 5 || tail.size() < 3) continue;
    bool match = controller.empty() ? tail[0] == "cgroup2"
                                    : tail[0] == "cgroup" && has_item(tail[2], controller);
    // Only a mount of the hierarchy's root maps paths of /proc/PID/cgroup directly.
    if (match && fields[3] == "/") return std::string(fields[4]);
  }
  return {};
}

}  // namespace

std::optional<OomCounter> find_oom_counter(std::string_view proc_cgroup, std::string_view mountinfo,
                                           bool (*exists)(const std::string&)) {
  std::string v2_path, v1_path;
  for (auto line : split(proc_cgroup, '\n')) {
    auto parts = split(line, ':');
    if (parts.size() < 3) continue;
    std::string_view path = line.substr(parts[0].size() + parts[1].size() + 2);
    if (parts[0] == "0" && parts[1].empty()) v2_path = path;
    if (has_item(parts[1], "memory")) v1_path = path;
  }
  if (!v2_path.empty()) {
    std::string mount = cgroup_mount(mountinfo, "");
    std::string file = mount + (v2_path == "/" ? "" : v2_path) + "/memory.events";
    if (!mount.empty() && exists(file)) return OomCounter{file};
  }
  if (!v1_path.empty()) {
    std::string mount = cgroup_mount(mountinfo, "memory");
    std::string file = mount + (v1_path == "/" ? "" : v1_path) + "/memory.oom_control";
    if (!mount.empty() && exists(file)) return OomCounter{file};
  }
  return std::nullopt;
}

std::optional<OomCounter> find_oom_counter(pid_t pid) {
  std::string cg = read_small_file("/proc/" + std::to_string(pid) + "/cgroup");
  std::string mi = read_small_file("/proc/self/mountinfo", 1024 * 1024);
  return find_oom_counter(cg, mi,
                          [](const std::string& p) { return ::access(p.c_str(), R_OK) == 0; });
}

uint64_t parse_oom_kills(std::string_view text) {
  for (auto line : split(text, '\n')) {
    constexpr std::string_view kKey = "oom_kill ";
    if (!line.starts_with(kKey)) continue;
    line.remove_prefix(kKey.size());
    uint64_t v = 0;
    std::from_chars(line.data(), line.data() + line.size(), v);
    return v;
  }
  return 0;
}

uint64_t read_oom_kills(const OomCounter& c) {
  return parse_oom_kills(read_small_file(c.path));
}

}  // namespace vireo::monitor
