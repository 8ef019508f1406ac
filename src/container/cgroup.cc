#include "container/cgroup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include <set>
#include <thread>

#include "base/file.h"
#include "base/strings.h"
#include "container/cgroup_files.h"

namespace vireo::container {

namespace {

namespace fs = std::filesystem;

struct Hierarchy {
  std::string mountpoint;
  std::string root;  // the mount's root inside the hierarchy (not "/" under a cgroup namespace)
  std::vector<std::string> controllers;  // empty for cgroup2
};

std::vector<Hierarchy> mounted_hierarchies() {
  std::vector<Hierarchy> out;
  auto text = read_file("/proc/self/mountinfo");
  if (!text) return out;
  for (const auto& line : split(*text, '\n')) {
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    auto left = split(line.substr(0, dash), ' ');
    auto right = split(line.substr(dash + 3), ' ');
    if (left.size() < 5 || right.size() < 3) continue;
    if (right[0] == "cgroup2") {
      out.push_back({left[4], left[3], {}});
    } else if (right[0] == "cgroup") {
      Hierarchy h{left[4], left[3], {}};
      for (const auto& opt : split(right[2], ',')) {
        static const std::set<std::string> kNotControllers = {
            "rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec"};
        if (!kNotControllers.contains(opt) && !opt.starts_with("release_agent") &&
            opt != "clone_children" && opt != "noprefix" && opt != "xattr")
          h.controllers.push_back(opt);
      }
      out.push_back(std::move(h));
    }
  }
  return out;
}

// The runtime's own cgroup per hierarchy key ("memory", "cpu,cpuacct", "" for v2).
std::map<std::string, std::string> own_cgroups() {
  std::map<std::string, std::string> out;
  auto text = read_file("/proc/self/cgroup");
  if (!text) return out;
  for (const auto& line : split(*text, '\n')) {
    auto first = line.find(':');
    auto second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    out[line.substr(first + 1, second - first - 1)] = line.substr(second + 1);
  }
  return out;
}

// "system.slice:libpod:abc" → "/system.slice/libpod-abc.scope"
std::string systemd_to_path(const std::string& spec) {
  auto parts = split(spec, ':');
  if (parts.size() != 3) return spec;
  return fmt::format("/{}/{}-{}.scope", parts[0].empty() ? "system.slice" : parts[0], parts[1],
                     parts[2]);
}

std::string on_disk(const Hierarchy& h, const std::string& own, const std::string& wanted) {
  std::string cg = wanted.starts_with('/') ? wanted : (fs::path(own) / wanted).string();
  if (h.root != "/" && cg.starts_with(h.root)) cg = cg.substr(h.root.size());
  return (fs::path(h.mountpoint) / fs::path(cg).relative_path()).lexically_normal().string();
}

// A new v1 cpuset directory starts with empty cpus/mems and refuses tasks; copy the parent's.
void init_cpuset_dir(const fs::path& dir) {
  for (const char* file : {"cpuset.cpus", "cpuset.mems"}) {
    auto mine = read_file(dir / file);
    if (mine && !trim(*mine).empty()) continue;
    if (auto parent = read_file(dir.parent_path() / file))
      (void)write_cgroup_file(dir, file, std::string(trim(*parent)));
  }
}

Result<void> make_cgroup_dirs(const fs::path& dir, bool cpuset_v1) {
  if (::mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST) {
    if (cpuset_v1) init_cpuset_dir(dir);
    return {};
  }
  if (errno != ENOENT) return errno_error(fmt::format("create cgroup {}", dir.string()));
  TRY(make_cgroup_dirs(dir.parent_path(), cpuset_v1));
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    return errno_error(fmt::format("create cgroup {}", dir.string()));
  if (cpuset_v1) init_cpuset_dir(dir);
  return {};
}

void enable_v2_controllers(const fs::path& mountpoint, const fs::path& dir) {
  auto available = read_file(mountpoint / "cgroup.controllers");
  if (!available) return;
  std::string enable;
  for (const auto& c : split(std::string(trim(*available)), ' '))
    if (!c.empty()) enable += "+" + c + " ";
  if (enable.empty()) return;
  fs::path p = mountpoint;
  for (const auto& part : dir.lexically_relative(mountpoint)) {
    (void)write_cgroup_file(p, "cgroup.subtree_control", enable);
    p /= part;
  }
}

}  // namespace

CgroupMode Cgroup::detect_mode() {
  struct statfs st;
  if (::statfs("/sys/fs/cgroup", &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC)
    return CgroupMode::kUnified;
  if (::statfs("/sys/fs/cgroup/unified", &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC)
    return CgroupMode::kHybrid;
  return CgroupMode::kLegacy;
}

Result<Cgroup> Cgroup::resolve(const std::string& cgroups_path, const std::string& id,
                               bool systemd) {
  std::string wanted = cgroups_path.empty() ? "/vireo-runtime/" + id : cgroups_path;
  if (systemd && wanted.find(':') != std::string::npos) wanted = systemd_to_path(wanted);
  if (wanted.find("..") != std::string::npos)
    return make_error(ErrorCode::kInvalidArgument,
                      "config.json: linux.cgroupsPath: \"{}\" must not contain \"..\"", wanted);
  Cgroup cg;
  cg.mode_ = detect_mode();
  auto own = own_cgroups();
  for (const auto& h : mounted_hierarchies()) {
    if (h.controllers.empty()) {
      if ((cg.mode_ == CgroupMode::kUnified && h.mountpoint == "/sys/fs/cgroup") ||
          (cg.mode_ == CgroupMode::kHybrid && h.mountpoint == "/sys/fs/cgroup/unified"))
        cg.unified_ = on_disk(h, own[""], wanted);
      continue;
    }
    if (cg.mode_ == CgroupMode::kUnified) continue;
    std::string key = fmt::format("{}", fmt::join(h.controllers, ","));
    std::string dir = on_disk(h, own[key], wanted);
    for (const auto& c : h.controllers) cg.legacy_[c] = dir;
  }
  if (cg.mode_ == CgroupMode::kUnified ? cg.unified_.empty() : cg.legacy_.empty())
    return make_error(ErrorCode::kUnavailable, "no cgroup hierarchy is mounted");
  return cg;
}

Json Cgroup::to_json() const {
  Json j;
  j["mode"] = static_cast<int>(mode_);
  if (!unified_.empty()) j["unified"] = unified_;
  if (!legacy_.empty()) j["legacy"] = legacy_;
  return j;
}

Result<Cgroup> Cgroup::from_json(const Json& j) {
  Cgroup cg;
  try {
    cg.mode_ = static_cast<CgroupMode>(j.at("mode").get<int>());
    if (j.contains("unified")) cg.unified_ = j["unified"].get<std::string>();
    if (j.contains("legacy")) cg.legacy_ = j["legacy"].get<std::map<std::string, std::string>>();
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kInternal, "corrupt cgroup state: {}", e.what());
  }
  return cg;
}

std::string Cgroup::path_of(const std::string& controller) const {
  if (mode_ == CgroupMode::kUnified) return unified_;
  auto it = legacy_.find(controller);
  return it == legacy_.end() ? std::string() : it->second;
}

std::map<std::string, std::string> Cgroup::legacy_dirs() const {
  std::map<std::string, std::string> out;
  for (const auto& [controller, dir] : legacy_) {
    std::string name = controller.starts_with("name=") ? controller.substr(5) : controller;
    auto& names = out[dir];
    names = names.empty() ? name : names + "," + name;
  }
  return out;
}

void Cgroup::disable() {
  unified_.clear();
  legacy_.clear();
}

Result<void> Cgroup::create() {
  if (!enabled()) return {};
  if (mode_ == CgroupMode::kUnified) {
    TRY(make_cgroup_dirs(unified_, false));
    enable_v2_controllers("/sys/fs/cgroup", unified_);
    return {};
  }
  std::set<std::string> done;
  for (const auto& [controller, dir] : legacy_) {
    if (!done.insert(dir).second) continue;
    TRY(make_cgroup_dirs(dir, controller == "cpuset" || dir == path_of("cpuset")));
  }
  if (!unified_.empty()) TRY(make_cgroup_dirs(unified_, false));
  return {};
}

Result<int> Cgroup::unified_fd() const {
  if (mode_ != CgroupMode::kUnified || !enabled()) return -1;
  int fd = ::open(unified_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_error(fmt::format("open cgroup {}", unified_));
  return fd;
}

Result<void> Cgroup::add_process(pid_t pid) {
  std::string text = std::to_string(pid);
  if (!enabled()) return {};
  if (mode_ == CgroupMode::kUnified) return write_cgroup_file(unified_, "cgroup.procs", text);
  std::set<std::string> done;
  for (const auto& [controller, dir] : legacy_) {
    if (!done.insert(dir).second) continue;
    TRY(write_cgroup_file(dir, "cgroup.procs", text));
  }
  if (!unified_.empty()) TRY(write_cgroup_file(unified_, "cgroup.procs", text));
  return {};
}

Result<std::vector<pid_t>> Cgroup::pids() const {
  if (!enabled())
    return make_error(ErrorCode::kUnavailable, "the container runs without a cgroup (rootless)");
  std::string dir = mode_ == CgroupMode::kUnified ? unified_ : path_of("pids");
  if (dir.empty()) dir = path_of("freezer");
  if (dir.empty()) dir = legacy_.begin()->second;
  auto text = read_file(fs::path(dir) / "cgroup.procs");
  if (!text) return std::unexpected(std::move(text.error()));
  std::vector<pid_t> out;
  for (const auto& line : split(*text, '\n'))
    if (!line.empty()) out.push_back(static_cast<pid_t>(std::stol(line)));
  return out;
}

Result<void> Cgroup::freeze(bool frozen) {
  using namespace std::chrono_literals;
  if (!enabled())
    return make_error(ErrorCode::kUnavailable,
                      "pause and resume need a cgroup; the container runs without one (rootless)");
  if (mode_ == CgroupMode::kUnified) {
    TRY(write_cgroup_file(unified_, "cgroup.freeze", frozen ? "1" : "0"));
  } else {
    std::string dir = path_of("freezer");
    if (dir.empty()) return make_error(ErrorCode::kUnavailable, "no freezer cgroup controller");
    TRY(write_cgroup_file(dir, "freezer.state", frozen ? "FROZEN" : "THAWED"));
  }
  // Freezing completes asynchronously; pause must not return before the tasks are stopped.
  for (int i = 0; i < 2000; ++i) {
    if (TRY(this->frozen()) == frozen) return {};
    std::this_thread::sleep_for(1ms);
  }
  return make_error(ErrorCode::kTimeout, "cgroup did not {} within 2s", frozen ? "freeze" : "thaw");
}

Result<bool> Cgroup::frozen() const {
  if (mode_ == CgroupMode::kUnified) {
    auto events = read_file(fs::path(unified_) / "cgroup.events");
    if (!events) return std::unexpected(std::move(events.error()));
    return events->find("frozen 1") != std::string::npos;
  }
  std::string dir = path_of("freezer");
  if (dir.empty()) return false;
  auto state = read_file(fs::path(dir) / "freezer.state");
  if (!state) return std::unexpected(std::move(state.error()));
  return trim(*state) == "FROZEN";
}

Result<void> Cgroup::destroy() {
  using namespace std::chrono_literals;
  std::set<std::string> dirs;
  if (!unified_.empty()) dirs.insert(unified_);
  for (const auto& [c, dir] : legacy_) dirs.insert(dir);
  for (const auto& dir : dirs) {
    // A task that just exited can keep a cgroup busy for a moment; retry briefly.
    for (int attempt = 0;; ++attempt) {
      if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) break;
      if (errno != EBUSY || attempt >= 500)
        return errno_error(fmt::format("remove cgroup {}", dir));
      std::this_thread::sleep_for(1ms);
    }
  }
  return {};
}

Result<void> Cgroup::apply(const Resources& r) {
  if (!enabled())
    return make_error(ErrorCode::kUnavailable,
                      "linux.resources: the container runs without a cgroup (rootless), so limits "
                      "cannot be applied");
  return mode_ == CgroupMode::kUnified ? apply_v2(r) : apply_v1(r);
}

}  // namespace vireo::container
