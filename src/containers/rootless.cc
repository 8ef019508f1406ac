#include "containers/rootless.h"

#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>

#include "base/file.h"
#include "base/strings.h"

namespace vireo::containers {

namespace {

constexpr const char* kCgroup2Root = "/sys/fs/cgroup";

bool has_limits(const CreateRequest& r) {
  return r.memory || r.cpus || r.pids_limit;
}

// This process's cgroup v2 path ("0::/a/b" in /proc/self/cgroup), "" when unknown.
std::string own_cgroup2() {
  auto text = read_file("/proc/self/cgroup");
  if (!text) return "";
  for (auto line : split(*text, '\n'))
    if (line.starts_with("0::")) return std::string(line.substr(3));
  return "";
}

// The user may create child cgroups in dir and move processes there.
bool owned_and_writable(const std::string& dir) {
  struct stat st {};
  return ::stat(dir.c_str(), &st) == 0 && st.st_uid == ::geteuid() &&
         ::access(fmt::format("{}/cgroup.procs", dir).c_str(), W_OK) == 0 &&
         ::access(fmt::format("{}/cgroup.subtree_control", dir).c_str(), W_OK) == 0;
}

}  // namespace

bool rootless() {
  return ::geteuid() != 0;
}

std::string delegated_cgroup() {
  struct statfs fs {};
  if (::statfs(kCgroup2Root, &fs) != 0 || fs.f_type != CGROUP2_SUPER_MAGIC) return "";
  std::string path = own_cgroup2();
  if (!path.starts_with('/')) return "";
  std::string best;
  while (path.size() > 1 && owned_and_writable(fmt::format("{}{}", kCgroup2Root, path))) {
    best = path;
    path.resize(path.rfind('/'));  // the parent; "" past the top level
  }
  if (best.empty()) return "";
  auto controllers = read_file(fmt::format("{}{}/cgroup.controllers", kCgroup2Root, best));
  if (!controllers) return "";
  auto words = split(trim(*controllers), ' ');
  for (std::string_view needed : {"memory", "cpu", "pids"})
    if (std::find(words.begin(), words.end(), needed) == words.end()) return "";
  return best;
}

Result<void> check_rootless(const CreateRequest& r) {
  if (!rootless()) return {};
  const uid_t uid = ::geteuid();
  if (r.network == NetworkMode::kNetwork && !r.network_name.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "network {}: Vireo networks need vireod running as root, and this one is "
                      "rootless (uid {}); use network none or host",
                      r.network_name, uid);
  if (!r.ports.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "publishing ports needs a Vireo network, and a rootless vireod (uid {}) has "
                      "none: Vireo networks need root",
                      uid);
  if (!r.ip.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'ip' needs a Vireo network, and a rootless vireod (uid {}) has none",
                      uid);
  if (has_limits(r) && delegated_cgroup().empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "memory, cpus and pids limits of a rootless container need a cgroup v2 "
                      "subtree delegated to uid {}, and there is none; run it without limits or "
                      "delegate one (systemd: Delegate=yes)",
                      uid);
  return {};
}

Result<void> finish_rootless_spec(Json& spec, const CreateRequest& r, const std::string& id) {
  Json& user = spec["process"]["user"];
  if (user.value("uid", 0) != 0 || user.value("gid", 0) != 0)
    return make_error(ErrorCode::kInvalidArgument,
                      "user '{}': a rootless container maps only uid {} (to root in the "
                      "container); run it as root",
                      r.user.empty() ? fmt::format("{}", user.value("uid", 0)) : r.user,
                      ::geteuid());
  user.erase("additionalGids");

  Json& linux = spec["linux"];
  // Network none: a namespace of the container's user namespace, with loopback only.
  bool has_netns = false;
  for (const auto& ns : linux["namespaces"])
    if (ns.value("type", "") == "network") has_netns = true;
  if (r.network != NetworkMode::kHost && !has_netns)
    linux["namespaces"].push_back({{"type", "network"}});

  Json limits = resources_json(r);
  if (limits.empty()) {
    linux.erase("resources");
    return {};
  }
  std::string cgroup = delegated_cgroup();
  if (cgroup.empty()) return check_rootless(r);  // refuses the limits
  linux["resources"] = limits;
  linux["cgroupsPath"] = fmt::format("{}/vireo-{}", cgroup, id);
  return {};
}

}  // namespace vireo::containers
