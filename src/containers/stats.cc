// Engine::stats: a running container's resource use, read from its init's cgroups (v2, or the
// v1 controllers of a hybrid host) and its network namespace (/proc/PID/net/dev).
#include <fstream>
#include <map>
#include <sstream>

#include "base/file.h"
#include "base/strings.h"
#include "containers/engine.h"
#include "containers/engine_impl.h"

namespace vireo::containers {

namespace {

namespace fs = std::filesystem;
const fs::path kCgroupRoot = "/sys/fs/cgroup";

// controller ("" for the unified hierarchy) → directory, from /proc/PID/cgroup.
std::map<std::string, fs::path> cgroup_dirs(int pid) {
  std::map<std::string, fs::path> out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  for (std::string line; std::getline(in, line);) {
    auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    if (controllers.empty()) {
      // Hybrid hosts mount the unified hierarchy at /sys/fs/cgroup/unified.
      fs::path unified =
          fs::exists(kCgroupRoot / "cgroup.controllers") ? kCgroupRoot : kCgroupRoot / "unified";
      out[""] = unified / path.substr(1);
      continue;
    }
    std::stringstream names(controllers);
    for (std::string c; std::getline(names, c, ',');) out[c] = kCgroupRoot / c / path.substr(1);
  }
  return out;
}

std::optional<uint64_t> read_number(const fs::path& file) {
  auto text = read_file(file);
  if (!text) return std::nullopt;
  try {
    return std::stoull(*text);
  } catch (const std::exception&) {
    return std::nullopt;  // "max"
  }
}

// "key value" lines (cpu.stat, memory.stat).
std::optional<uint64_t> read_key(const fs::path& file, const std::string& key) {
  std::ifstream in(file);
  for (std::string k; in >> k;) {
    uint64_t v = 0;
    if (!(in >> v)) return std::nullopt;
    if (k == key) return v;
  }
  return std::nullopt;
}

// A controller's directory: v1 when the host has it there, else the unified one.
std::optional<fs::path> dir_of(const std::map<std::string, fs::path>& dirs, const std::string& c,
                               const std::string& probe_v1, const std::string& probe_v2) {
  if (auto it = dirs.find(c); it != dirs.end() && fs::exists(it->second / probe_v1))
    return it->second;
  if (auto it = dirs.find(""); it != dirs.end() && fs::exists(it->second / probe_v2))
    return it->second;
  return std::nullopt;
}

void cpu_and_memory(const std::map<std::string, fs::path>& dirs, ContainerStats& s) {
  if (auto d = dir_of(dirs, "cpuacct", "cpuacct.usage", "cpu.stat")) {
    if (auto ns = read_number(*d / "cpuacct.usage"))
      s.cpu_seconds = static_cast<double>(*ns) / 1e9;
    else if (auto us = read_key(*d / "cpu.stat", "usage_usec"))
      s.cpu_seconds = static_cast<double>(*us) / 1e6;
  }
  if (auto d = dir_of(dirs, "memory", "memory.usage_in_bytes", "memory.current")) {
    s.memory_bytes = read_number(*d / "memory.usage_in_bytes")
                         .value_or(read_number(*d / "memory.current").value_or(0));
    auto limit = read_number(*d / "memory.limit_in_bytes");
    if (!limit) limit = read_number(*d / "memory.max");
    // v1 says "no limit" with a huge number.
    if (limit && *limit < (uint64_t{1} << 62)) s.memory_limit = *limit;
  }
  if (auto d = dir_of(dirs, "pids", "pids.current", "pids.current"))
    s.pids = read_number(*d / "pids.current").value_or(0);
}

void block_io(const std::map<std::string, fs::path>& dirs, ContainerStats& s) {
  if (auto d = dir_of(dirs, "blkio", "blkio.throttle.io_service_bytes", "io.stat")) {
    std::ifstream v1(*d / "blkio.throttle.io_service_bytes");
    for (std::string dev, op; v1 >> dev;) {
      if (dev == "Total") break;
      uint64_t n = 0;
      if (!(v1 >> op >> n)) break;
      if (op == "Read") s.block_read += n;
      if (op == "Write") s.block_write += n;
    }
    std::ifstream v2(*d / "io.stat");
    for (std::string line; std::getline(v2, line);) {
      std::stringstream words(line);
      for (std::string w; words >> w;) {
        if (w.starts_with("rbytes=")) s.block_read += std::stoull(w.substr(7));
        if (w.starts_with("wbytes=")) s.block_write += std::stoull(w.substr(7));
      }
    }
  }
}

// Bytes received and sent on every interface but lo of the process's network namespace.
void network(int pid, ContainerStats& s) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/net/dev");
  std::string line;
  std::getline(in, line);
  std::getline(in, line);  // two header lines
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name(trim(std::string_view(line).substr(0, colon)));
    if (name == "lo") continue;
    std::stringstream f(line.substr(colon + 1));
    std::vector<uint64_t> v;
    for (uint64_t n; f >> n;) v.push_back(n);
    if (v.size() < 9) continue;
    s.net_rx += v[0];
    s.net_tx += v[8];
  }
}

}  // namespace

Result<ContainerStats> Engine::stats(const std::string& name) {
  Container c = TRY(impl_->running(name));
  ContainerStats s;
  auto dirs = cgroup_dirs(c.pid);
  if (dirs.empty()) return make_error(ErrorCode::kConflict, "container {} has exited", c.name);
  cpu_and_memory(dirs, s);
  block_io(dirs, s);
  network(c.pid, s);
  return s;
}

}  // namespace vireo::containers
