// config.json: the linux section.
#include <sched.h>

#include <array>
#include <set>

#include "container/config_parse.h"

namespace vireo::container {

namespace {

struct NamespaceName {
  std::string_view name;
  NamespaceType type;
  int flag;
};
constexpr std::array<NamespaceName, 8> kNamespaces = {{
    {"pid", NamespaceType::kPid, CLONE_NEWPID},
    {"network", NamespaceType::kNetwork, CLONE_NEWNET},
    {"mount", NamespaceType::kMount, CLONE_NEWNS},
    {"ipc", NamespaceType::kIpc, CLONE_NEWIPC},
    {"uts", NamespaceType::kUts, CLONE_NEWUTS},
    {"user", NamespaceType::kUser, CLONE_NEWUSER},
    {"cgroup", NamespaceType::kCgroup, CLONE_NEWCGROUP},
    {"time", NamespaceType::kTime, CLONE_NEWTIME},
}};

std::string J(const std::string& path, std::string_view key) {
  return JsonFields::join(path, key);
}

Result<std::string> absolute_path(const JsonFields& f, const Json& j, const std::string& path) {
  std::string s = TRY(f.string(j, path));
  if (!s.starts_with('/')) return f.fail(path, fmt::format("\"{}\" must be an absolute path", s));
  return s;
}

Result<std::vector<Namespace>> parse_namespaces(const JsonFields& f, const Json& j,
                                                const std::string& path) {
  TRY(f.expect_array(j, path));
  std::vector<Namespace> out;
  std::set<NamespaceType> seen;
  for (size_t i = 0; i < j.size(); ++i) {
    std::string p = JsonFields::index(path, i);
    TRY(f.expect_object(j[i], p));
    f.warn_unknown(j[i], p, {"type", "path"});
    std::string type = TRY(f.string(*TRY(f.require(j[i], p, "type")), J(p, "type")));
    auto it = std::find_if(kNamespaces.begin(), kNamespaces.end(),
                           [&](const NamespaceName& n) { return n.name == type; });
    if (it == kNamespaces.end())
      return f.fail(J(p, "type"), fmt::format("unknown namespace type \"{}\"", type));
    if (!seen.insert(it->type).second)
      return f.fail(p, fmt::format("duplicate namespace type \"{}\"", type));
    Namespace ns{it->type, {}};
    if (const Json* v = JsonFields::find(j[i], "path"))
      ns.path = TRY(absolute_path(f, *v, J(p, "path")));
    out.push_back(std::move(ns));
  }
  return out;
}

Result<std::vector<IdMapping>> parse_id_mappings(const JsonFields& f, const Json& j,
                                                 const std::string& path) {
  TRY(f.expect_array(j, path));
  std::vector<IdMapping> out;
  for (size_t i = 0; i < j.size(); ++i) {
    std::string p = JsonFields::index(path, i);
    TRY(f.expect_object(j[i], p));
    f.warn_unknown(j[i], p, {"containerID", "hostID", "size"});
    IdMapping m;
    auto field = [&](std::string_view key) -> Result<uint32_t> {
      return static_cast<uint32_t>(
          TRY(f.unsigned_int(*TRY(f.require(j[i], p, key)), J(p, key), UINT32_MAX)));
    };
    m.container_id = TRY(field("containerID"));
    m.host_id = TRY(field("hostID"));
    m.size = TRY(field("size"));
    if (m.size == 0) return f.fail(J(p, "size"), "must be greater than zero");
    out.push_back(m);
  }
  return out;
}

Result<std::vector<Device>> parse_devices(const JsonFields& f, const Json& j,
                                          const std::string& path) {
  TRY(f.expect_array(j, path));
  std::vector<Device> out;
  for (size_t i = 0; i < j.size(); ++i) {
    std::string p = JsonFields::index(path, i);
    TRY(f.expect_object(j[i], p));
    f.warn_unknown(j[i], p, {"type", "path", "major", "minor", "fileMode", "uid", "gid"});
    Device d;
    d.path = TRY(absolute_path(f, *TRY(f.require(j[i], p, "path")), J(p, "path")));
    std::string type = TRY(f.string(*TRY(f.require(j[i], p, "type")), J(p, "type")));
    if (type.size() != 1 || std::string_view("cbup").find(type[0]) == std::string_view::npos)
      return f.fail(J(p, "type"), fmt::format("\"{}\" is not one of c, b, u, p", type));
    d.type = type[0];
    if (d.type != 'p') {
      d.major = TRY(f.signed_int(*TRY(f.require(j[i], p, "major")), J(p, "major")));
      d.minor = TRY(f.signed_int(*TRY(f.require(j[i], p, "minor")), J(p, "minor")));
    }
    TRY(f.get(j[i], p, "fileMode", d.file_mode));
    TRY(f.get(j[i], p, "uid", d.uid));
    TRY(f.get(j[i], p, "gid", d.gid));
    out.push_back(std::move(d));
  }
  return out;
}

Result<std::vector<DeviceRule>> parse_device_rules(const JsonFields& f, const Json& j,
                                                   const std::string& path) {
  TRY(f.expect_array(j, path));
  std::vector<DeviceRule> out;
  for (size_t i = 0; i < j.size(); ++i) {
    std::string p = JsonFields::index(path, i);
    TRY(f.expect_object(j[i], p));
    f.warn_unknown(j[i], p, {"allow", "type", "major", "minor", "access"});
    DeviceRule r;
    r.allow = TRY(f.boolean(*TRY(f.require(j[i], p, "allow")), J(p, "allow")));
    std::string type = "a";
    TRY(f.get(j[i], p, "type", type));
    if (type.size() != 1 || std::string_view("acb").find(type[0]) == std::string_view::npos)
      return f.fail(J(p, "type"), fmt::format("\"{}\" is not one of a, c, b", type));
    r.type = type[0];
    TRY(f.get(j[i], p, "major", r.major));
    TRY(f.get(j[i], p, "minor", r.minor));
    r.access = "rwm";
    TRY(f.get(j[i], p, "access", r.access));
    if (r.access.find_first_not_of("rwm") != std::string::npos)
      return f.fail(J(p, "access"), fmt::format("\"{}\" may only contain r, w, m", r.access));
    out.push_back(std::move(r));
  }
  return out;
}

Result<void> parse_memory(const JsonFields& f, const Json& j, const std::string& p, Resources& r) {
  TRY(f.expect_object(j, p));
  f.warn_unknown(j, p,
                 {"limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness",
                  "disableOOMKiller", "useHierarchy", "checkBeforeUpdate"});
  TRY(f.get(j, p, "limit", r.memory_limit));
  TRY(f.get(j, p, "reservation", r.memory_reservation));
  TRY(f.get(j, p, "swap", r.memory_swap));
  TRY(f.get(j, p, "swappiness", r.memory_swappiness));
  if (r.memory_swappiness && *r.memory_swappiness > 100)
    return f.fail(J(p, "swappiness"), "must be between 0 and 100");
  TRY(f.get(j, p, "disableOOMKiller", r.disable_oom_killer));
  return {};
}

Result<void> parse_cpu(const JsonFields& f, const Json& j, const std::string& p, Resources& r) {
  TRY(f.expect_object(j, p));
  f.warn_unknown(j, p,
                 {"shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "cpus",
                  "mems", "idle"});
  TRY(f.get(j, p, "shares", r.cpu_shares));
  TRY(f.get(j, p, "quota", r.cpu_quota));
  TRY(f.get(j, p, "burst", r.cpu_burst));
  TRY(f.get(j, p, "period", r.cpu_period));
  TRY(f.get(j, p, "cpus", r.cpuset_cpus));
  TRY(f.get(j, p, "mems", r.cpuset_mems));
  return {};
}

Result<std::vector<BlockDeviceValue>> parse_block_devices(const JsonFields& f, const Json& j,
                                                          const std::string& p,
                                                          const char* value_key) {
  TRY(f.expect_array(j, p));
  std::vector<BlockDeviceValue> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string item = JsonFields::index(p, i);
    TRY(f.expect_object(j[i], item));
    BlockDeviceValue d;
    d.major = TRY(f.signed_int(*TRY(f.require(j[i], item, "major")), J(item, "major")));
    d.minor = TRY(f.signed_int(*TRY(f.require(j[i], item, "minor")), J(item, "minor")));
    if (d.major < 0 || d.minor < 0) return f.fail(item, "major and minor must not be negative");
    TRY(f.get(j[i], item, value_key, d.value));
    out.push_back(d);
  }
  return out;
}

Result<void> parse_block_io(const JsonFields& f, const Json& j, const std::string& p,
                            Resources& r) {
  static const std::map<std::string, std::string> kThrottles = {
      {"throttleReadBpsDevice", "read_bps_device"},
      {"throttleWriteBpsDevice", "write_bps_device"},
      {"throttleReadIOPSDevice", "read_iops_device"},
      {"throttleWriteIOPSDevice", "write_iops_device"}};
  TRY(f.expect_object(j, p));
  f.warn_unknown(j, p,
                 {"weight", "leafWeight", "weightDevice", "throttleReadBpsDevice",
                  "throttleWriteBpsDevice", "throttleReadIOPSDevice", "throttleWriteIOPSDevice"});
  TRY(f.get(j, p, "weight", r.blkio_weight));
  if (const Json* v = JsonFields::find(j, "weightDevice"))
    r.blkio_weight_device = TRY(parse_block_devices(f, *v, J(p, "weightDevice"), "weight"));
  for (const auto& [key, file] : kThrottles)
    if (const Json* v = JsonFields::find(j, key))
      r.blkio_throttle[file] = TRY(parse_block_devices(f, *v, J(p, key), "rate"));
  return {};
}

Result<void> parse_hugepages(const JsonFields& f, const Json& j, const std::string& p,
                             Resources& r) {
  TRY(f.expect_array(j, p));
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string item = JsonFields::index(p, i);
    TRY(f.expect_object(j[i], item));
    std::string size = TRY(f.string(*TRY(f.require(j[i], item, "pageSize")), J(item, "pageSize")));
    // The size becomes part of a cgroup file name: "2MB", "1GB", "64KB".
    if (size.size() < 3 || size.find_first_not_of("0123456789") != size.size() - 2 ||
        !(size.ends_with("KB") || size.ends_with("MB") || size.ends_with("GB")))
      return f.fail(J(item, "pageSize"), fmt::format("\"{}\" is not a page size like 2MB", size));
    uint64_t limit = 0;
    TRY(f.get(j[i], item, "limit", limit));
    r.hugepage_limits[size] = limit;
  }
  return {};
}

}  // namespace

// Shared with `update --resources`, which takes the same object.
Result<Resources> parse_resources(const JsonFields& f, const Json& j, const std::string& p) {
  TRY(f.expect_object(j, p));
  f.warn_unknown(j, p,
                 {"devices", "memory", "cpu", "pids", "blockIO", "hugepageLimits", "network",
                  "rdma", "unified"});
  Resources r;
  if (const Json* v = JsonFields::find(j, "devices"))
    r.devices = TRY(parse_device_rules(f, *v, J(p, "devices")));
  if (const Json* v = JsonFields::find(j, "memory")) TRY(parse_memory(f, *v, J(p, "memory"), r));
  if (const Json* v = JsonFields::find(j, "cpu")) TRY(parse_cpu(f, *v, J(p, "cpu"), r));
  if (const Json* v = JsonFields::find(j, "pids")) {
    TRY(f.expect_object(*v, J(p, "pids")));
    f.warn_unknown(*v, J(p, "pids"), {"limit"});
    r.pids_limit =
        TRY(f.signed_int(*TRY(f.require(*v, J(p, "pids"), "limit")), J(p, "pids.limit")));
  }
  if (const Json* v = JsonFields::find(j, "blockIO"))
    TRY(parse_block_io(f, *v, J(p, "blockIO"), r));
  if (const Json* v = JsonFields::find(j, "hugepageLimits"))
    TRY(parse_hugepages(f, *v, J(p, "hugepageLimits"), r));
  TRY(f.get(j, p, "unified", r.unified));
  return r;
}

Result<std::map<std::string, TimeOffset>> parse_time_offsets(const JsonFields& f, const Json& j,
                                                             const std::string& p) {
  TRY(f.expect_object(j, p));
  std::map<std::string, TimeOffset> out;
  for (const auto& [clock, value] : j.items()) {
    if (clock != "monotonic" && clock != "boottime")
      return f.fail(J(p, clock), "only the monotonic and boottime clocks can be offset");
    TRY(f.expect_object(value, J(p, clock)));
    TimeOffset o;
    std::optional<int64_t> secs;
    TRY(f.get(value, J(p, clock), "secs", secs));
    o.secs = secs.value_or(0);
    TRY(f.get(value, J(p, clock), "nanosecs", o.nanosecs));
    if (o.nanosecs >= 1000000000)
      return f.fail(J(J(p, clock), "nanosecs"), "must be below 1000000000");
    out[clock] = o;
  }
  return out;
}

Result<Linux> parse_linux(const JsonFields& f, const Json& j, std::vector<std::string>*) {
  const std::string p = "linux";
  TRY(f.expect_object(j, p));
  f.warn_unknown(
      j, p,
      {"namespaces", "uidMappings", "gidMappings", "timeOffsets", "devices", "cgroupsPath",
       "resources", "rootfsPropagation", "seccomp", "sysctl", "maskedPaths", "readonlyPaths",
       "mountLabel", "personality", "intelRdt", "memoryPolicy"});
  Linux l;
  if (const Json* v = JsonFields::find(j, "namespaces"))
    l.namespaces = TRY(parse_namespaces(f, *v, J(p, "namespaces")));
  if (const Json* v = JsonFields::find(j, "uidMappings"))
    l.uid_mappings = TRY(parse_id_mappings(f, *v, J(p, "uidMappings")));
  if (const Json* v = JsonFields::find(j, "gidMappings"))
    l.gid_mappings = TRY(parse_id_mappings(f, *v, J(p, "gidMappings")));
  if (const Json* v = JsonFields::find(j, "timeOffsets"))
    l.time_offsets = TRY(parse_time_offsets(f, *v, J(p, "timeOffsets")));
  if (const Json* v = JsonFields::find(j, "devices"))
    l.devices = TRY(parse_devices(f, *v, J(p, "devices")));
  TRY(f.get(j, p, "cgroupsPath", l.cgroups_path));
  if (const Json* v = JsonFields::find(j, "resources"))
    l.resources = TRY(parse_resources(f, *v, J(p, "resources")));
  TRY(f.get(j, p, "rootfsPropagation", l.rootfs_propagation));
  static const std::set<std::string> kPropagations = {"",        "shared",     "slave",
                                                      "private", "unbindable", "rshared",
                                                      "rslave",  "rprivate",   "runbindable"};
  if (!kPropagations.contains(l.rootfs_propagation))
    return f.fail("linux.rootfsPropagation",
                  fmt::format("unknown propagation \"{}\"", l.rootfs_propagation));
  if (const Json* v = JsonFields::find(j, "seccomp"))
    l.seccomp = TRY(parse_seccomp(f, *v, J(p, "seccomp")));
  TRY(f.get(j, p, "sysctl", l.sysctl));
  for (const auto& key : {"maskedPaths", "readonlyPaths"}) {
    const Json* v = JsonFields::find(j, key);
    if (!v) continue;
    auto& out = std::string_view(key) == "maskedPaths" ? l.masked_paths : l.readonly_paths;
    TRY(f.expect_array(*v, J(p, key)));
    for (size_t i = 0; i < v->size(); ++i)
      out.push_back(TRY(absolute_path(f, (*v)[i], JsonFields::index(J(p, key), i))));
  }
  if (const Json* v = JsonFields::find(j, "personality")) {
    TRY(f.expect_object(*v, J(p, "personality")));
    std::string domain = TRY(
        f.string(*TRY(f.require(*v, J(p, "personality"), "domain")), "linux.personality.domain"));
    if (domain == "LINUX")
      l.personality = 0x0000;
    else if (domain == "LINUX32")
      l.personality = 0x0008;
    else
      return f.fail("linux.personality.domain", fmt::format("unknown domain \"{}\"", domain));
  }
  return l;
}

Result<void> check_consistency(const JsonFields& f, const Config& c) {
  const Linux& l = c.linux;
  bool user_ns = l.has_namespace(NamespaceType::kUser);
  if (!user_ns && !l.uid_mappings.empty())
    return f.fail("linux.uidMappings", "requires a user namespace in linux.namespaces");
  if (!user_ns && !l.gid_mappings.empty())
    return f.fail("linux.gidMappings", "requires a user namespace in linux.namespaces");
  const Namespace* user = l.find_namespace(NamespaceType::kUser);
  if (user && user->path.empty() && (l.uid_mappings.empty() || l.gid_mappings.empty()))
    return f.fail("linux.uidMappings", "a new user namespace needs uid and gid mappings");
  const Namespace* time = l.find_namespace(NamespaceType::kTime);
  if (!l.time_offsets.empty() && (!time || !time->path.empty()))
    return f.fail("linux.timeOffsets", "requires a new time namespace in linux.namespaces");
  const Namespace* uts = l.find_namespace(NamespaceType::kUts);
  if (!c.hostname.empty() && (!uts || !uts->path.empty()))
    return f.fail("hostname", "setting a hostname requires a new uts namespace");
  if (!c.domainname.empty() && (!uts || !uts->path.empty()))
    return f.fail("domainname", "setting a domainname requires a new uts namespace");
  if (!l.has_namespace(NamespaceType::kMount))
    return f.fail("linux.namespaces", "a mount namespace is required");
  return {};
}

std::string_view to_string(NamespaceType type) {
  for (const auto& n : kNamespaces)
    if (n.type == type) return n.name;
  return "?";
}

int clone_flag(NamespaceType type) {
  for (const auto& n : kNamespaces)
    if (n.type == type) return n.flag;
  return 0;
}

bool Linux::has_namespace(NamespaceType type) const {
  return find_namespace(type) != nullptr;
}

const Namespace* Linux::find_namespace(NamespaceType type) const {
  for (const auto& ns : namespaces)
    if (ns.type == type) return &ns;
  return nullptr;
}

}  // namespace vireo::container
