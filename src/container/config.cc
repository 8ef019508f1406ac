// config.json: the top level, process, mounts and hooks. The linux section is in
// config_linux.cc.
#include "container/config.h"

#include <sys/resource.h>
#include <sys/stat.h>

#include <array>
#include <set>

#include "base/file.h"
#include "container/config_parse.h"

namespace vireo::container {

namespace {

namespace fs = std::filesystem;

constexpr std::array<std::string_view, 41> kCapabilityNames = {"CAP_CHOWN",
                                                               "CAP_DAC_OVERRIDE",
                                                               "CAP_DAC_READ_SEARCH",
                                                               "CAP_FOWNER",
                                                               "CAP_FSETID",
                                                               "CAP_KILL",
                                                               "CAP_SETGID",
                                                               "CAP_SETUID",
                                                               "CAP_SETPCAP",
                                                               "CAP_LINUX_IMMUTABLE",
                                                               "CAP_NET_BIND_SERVICE",
                                                               "CAP_NET_BROADCAST",
                                                               "CAP_NET_ADMIN",
                                                               "CAP_NET_RAW",
                                                               "CAP_IPC_LOCK",
                                                               "CAP_IPC_OWNER",
                                                               "CAP_SYS_MODULE",
                                                               "CAP_SYS_RAWIO",
                                                               "CAP_SYS_CHROOT",
                                                               "CAP_SYS_PTRACE",
                                                               "CAP_SYS_PACCT",
                                                               "CAP_SYS_ADMIN",
                                                               "CAP_SYS_BOOT",
                                                               "CAP_SYS_NICE",
                                                               "CAP_SYS_RESOURCE",
                                                               "CAP_SYS_TIME",
                                                               "CAP_SYS_TTY_CONFIG",
                                                               "CAP_MKNOD",
                                                               "CAP_LEASE",
                                                               "CAP_AUDIT_WRITE",
                                                               "CAP_AUDIT_CONTROL",
                                                               "CAP_SETFCAP",
                                                               "CAP_MAC_OVERRIDE",
                                                               "CAP_MAC_ADMIN",
                                                               "CAP_SYSLOG",
                                                               "CAP_WAKE_ALARM",
                                                               "CAP_BLOCK_SUSPEND",
                                                               "CAP_AUDIT_READ",
                                                               "CAP_PERFMON",
                                                               "CAP_BPF",
                                                               "CAP_CHECKPOINT_RESTORE"};

struct RlimitName {
  std::string_view name;
  int resource;
};
constexpr RlimitName kRlimits[] = {
    {"RLIMIT_AS", RLIMIT_AS},
    {"RLIMIT_CORE", RLIMIT_CORE},
    {"RLIMIT_CPU", RLIMIT_CPU},
    {"RLIMIT_DATA", RLIMIT_DATA},
    {"RLIMIT_FSIZE", RLIMIT_FSIZE},
    {"RLIMIT_LOCKS", RLIMIT_LOCKS},
    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
    {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
    {"RLIMIT_NICE", RLIMIT_NICE},
    {"RLIMIT_NOFILE", RLIMIT_NOFILE},
    {"RLIMIT_NPROC", RLIMIT_NPROC},
    {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
    {"RLIMIT_RTTIME", RLIMIT_RTTIME},
    {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_STACK", RLIMIT_STACK},
};

Result<std::vector<int>> parse_cap_set(const JsonFields& f, const Json& j, const std::string& path,
                                       std::vector<std::string>* warnings) {
  auto names = TRY(f.string_list(j, path));
  std::vector<int> caps;
  for (size_t i = 0; i < names.size(); ++i) {
    int cap = capability_from_name(names[i]);
    if (cap >= 0) {
      caps.push_back(cap);
    } else if (names[i].starts_with("CAP_")) {
      // A capability newer than this build: runc ignores these too, so configs stay portable.
      if (warnings)
        warnings->push_back(fmt::format("config.json: {}: unknown capability \"{}\" ignored",
                                        JsonFields::index(path, i), names[i]));
    } else {
      return f.fail(JsonFields::index(path, i),
                    fmt::format("\"{}\" is not a capability name (CAP_...)", names[i]));
    }
  }
  return caps;
}

Result<Capabilities> parse_capabilities(const JsonFields& f, const Json& j, const std::string& path,
                                        std::vector<std::string>* warnings) {
  TRY(f.expect_object(j, path));
  f.warn_unknown(j, path, {"bounding", "effective", "inheritable", "permitted", "ambient"});
  Capabilities caps;
  auto set = [&](std::string_view key, std::vector<int>& out) -> Result<void> {
    if (const Json* v = JsonFields::find(j, key))
      out = TRY(parse_cap_set(f, *v, JsonFields::join(path, key), warnings));
    return {};
  };
  TRY(set("bounding", caps.bounding));
  TRY(set("effective", caps.effective));
  TRY(set("inheritable", caps.inheritable));
  TRY(set("permitted", caps.permitted));
  TRY(set("ambient", caps.ambient));
  return caps;
}

Result<std::vector<Rlimit>> parse_rlimits(const JsonFields& f, const Json& j,
                                          const std::string& path) {
  TRY(f.expect_array(j, path));
  std::vector<Rlimit> out;
  std::set<int> seen;
  for (size_t i = 0; i < j.size(); ++i) {
    std::string p = JsonFields::index(path, i);
    TRY(f.expect_object(j[i], p));
    f.warn_unknown(j[i], p, {"type", "soft", "hard"});
    Rlimit r;
    r.name = TRY(f.string(*TRY(f.require(j[i], p, "type")), JsonFields::join(p, "type")));
    auto it = std::find_if(std::begin(kRlimits), std::end(kRlimits),
                           [&](const RlimitName& n) { return n.name == r.name; });
    if (it == std::end(kRlimits))
      return f.fail(JsonFields::join(p, "type"), fmt::format("unknown rlimit \"{}\"", r.name));
    r.resource = it->resource;
    if (!seen.insert(r.resource).second)
      return f.fail(p, fmt::format("duplicate rlimit \"{}\"", r.name));
    r.soft = TRY(
        f.unsigned_int(*TRY(f.require(j[i], p, "soft")), JsonFields::join(p, "soft"), UINT64_MAX));
    r.hard = TRY(
        f.unsigned_int(*TRY(f.require(j[i], p, "hard")), JsonFields::join(p, "hard"), UINT64_MAX));
    out.push_back(std::move(r));
  }
  return out;
}

Result<User> parse_user(const JsonFields& f, const Json& j, const std::string& path) {
  TRY(f.expect_object(j, path));
  f.warn_unknown(j, path, {"uid", "gid", "umask", "additionalGids", "username"});
  User u;
  u.uid = static_cast<uid_t>(TRY(
      f.unsigned_int(*TRY(f.require(j, path, "uid")), JsonFields::join(path, "uid"), UINT32_MAX)));
  u.gid = static_cast<gid_t>(TRY(
      f.unsigned_int(*TRY(f.require(j, path, "gid")), JsonFields::join(path, "gid"), UINT32_MAX)));
  std::optional<uint32_t> umask;
  TRY(f.get(j, path, "umask", umask));
  if (umask) {
    if (*umask > 07777) return f.fail(JsonFields::join(path, "umask"), "not a valid umask");
    u.umask = static_cast<mode_t>(*umask);
  }
  if (const Json* g = JsonFields::find(j, "additionalGids")) {
    std::string p = JsonFields::join(path, "additionalGids");
    TRY(f.expect_array(*g, p));
    for (size_t i = 0; i < g->size(); ++i)
      u.additional_gids.push_back(
          static_cast<gid_t>(TRY(f.unsigned_int((*g)[i], JsonFields::index(p, i), UINT32_MAX))));
  }
  return u;
}

Result<void> parse_console_size(const JsonFields& f, const Json& j, const std::string& path,
                                Process& p) {
  TRY(f.expect_object(j, path));
  f.warn_unknown(j, path, {"height", "width"});
  p.console_height = static_cast<unsigned short>(TRY(
      f.unsigned_int(*TRY(f.require(j, path, "height")), JsonFields::join(path, "height"), 65535)));
  p.console_width = static_cast<unsigned short>(TRY(
      f.unsigned_int(*TRY(f.require(j, path, "width")), JsonFields::join(path, "width"), 65535)));
  return {};
}

Result<std::vector<Mount>> parse_mounts(const JsonFields& f, const Json& j) {
  TRY(f.expect_array(j, "mounts"));
  std::vector<Mount> out;
  for (size_t i = 0; i < j.size(); ++i) {
    std::string p = JsonFields::index("mounts", i);
    TRY(f.expect_object(j[i], p));
    f.warn_unknown(j[i], p,
                   {"destination", "type", "source", "options", "uidMappings", "gidMappings"});
    Mount m;
    m.destination =
        TRY(f.string(*TRY(f.require(j[i], p, "destination")), JsonFields::join(p, "destination")));
    if (!m.destination.starts_with('/'))
      return f.fail(JsonFields::join(p, "destination"),
                    fmt::format("\"{}\" must be an absolute path", m.destination));
    TRY(f.get(j[i], p, "type", m.type));
    TRY(f.get(j[i], p, "source", m.source));
    TRY(f.get(j[i], p, "options", m.options));
    if (JsonFields::find(j[i], "uidMappings") || JsonFields::find(j[i], "gidMappings"))
      return f.fail(p, "idmapped mounts are not supported");
    out.push_back(std::move(m));
  }
  return out;
}

Result<std::vector<Hook>> parse_hook_list(const JsonFields& f, const Json& j,
                                          const std::string& path) {
  TRY(f.expect_array(j, path));
  std::vector<Hook> out;
  for (size_t i = 0; i < j.size(); ++i) {
    std::string p = JsonFields::index(path, i);
    TRY(f.expect_object(j[i], p));
    f.warn_unknown(j[i], p, {"path", "args", "env", "timeout"});
    Hook h;
    h.path = TRY(f.string(*TRY(f.require(j[i], p, "path")), JsonFields::join(p, "path")));
    if (!h.path.starts_with('/'))
      return f.fail(JsonFields::join(p, "path"),
                    fmt::format("\"{}\" must be an absolute path", h.path));
    TRY(f.get(j[i], p, "args", h.args));
    TRY(f.get(j[i], p, "env", h.env));
    TRY(f.get(j[i], p, "timeout", h.timeout));
    if (h.timeout && *h.timeout <= 0)
      return f.fail(JsonFields::join(p, "timeout"), "must be greater than zero");
    out.push_back(std::move(h));
  }
  return out;
}

Result<Hooks> parse_hooks(const JsonFields& f, const Json& j) {
  TRY(f.expect_object(j, "hooks"));
  f.warn_unknown(
      j, "hooks",
      {"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"});
  Hooks h;
  auto list = [&](std::string_view key, std::vector<Hook>& out) -> Result<void> {
    if (const Json* v = JsonFields::find(j, key))
      out = TRY(parse_hook_list(f, *v, JsonFields::join("hooks", key)));
    return {};
  };
  TRY(list("prestart", h.prestart));
  TRY(list("createRuntime", h.create_runtime));
  TRY(list("createContainer", h.create_container));
  TRY(list("startContainer", h.start_container));
  TRY(list("poststart", h.poststart));
  TRY(list("poststop", h.poststop));
  return h;
}

Result<void> parse_root(const JsonFields& f, const Json& doc, const fs::path& bundle, Config& c) {
  const Json& root = *TRY(f.require(doc, "", "root"));
  TRY(f.expect_object(root, "root"));
  f.warn_unknown(root, "root", {"path", "readonly"});
  std::string path = TRY(f.string(*TRY(f.require(root, "root", "path")), "root.path"));
  if (path.empty()) return f.fail("root.path", "must not be empty");
  c.rootfs = fs::path(path).is_absolute() ? fs::path(path) : bundle / path;
  c.rootfs = c.rootfs.lexically_normal();
  TRY(f.get(root, "root", "readonly", c.root_readonly));
  return {};
}

}  // namespace

Result<Process> parse_process(const JsonFields& f, const Json& j, const std::string& path,
                              std::vector<std::string>* warnings) {
  TRY(f.expect_object(j, path));
  f.warn_unknown(j, path,
                 {"terminal", "consoleSize", "user", "args", "commandLine", "env", "cwd",
                  "capabilities", "rlimits", "noNewPrivileges", "oomScoreAdj", "apparmorProfile",
                  "selinuxLabel", "ioPriority", "scheduler", "execCPUAffinity"});
  auto J = [&](std::string_view key) { return JsonFields::join(path, key); };
  Process p;
  TRY(f.get(j, path, "terminal", p.terminal));
  if (const Json* v = JsonFields::find(j, "consoleSize"))
    TRY(parse_console_size(f, *v, J("consoleSize"), p));
  if (const Json* v = JsonFields::find(j, "user")) p.user = TRY(parse_user(f, *v, J("user")));
  p.args = TRY(f.string_list(*TRY(f.require(j, path, "args")), J("args")));
  if (p.args.empty()) return f.fail(J("args"), "must contain at least the program to run");
  TRY(f.get(j, path, "env", p.env));
  p.cwd = TRY(f.string(*TRY(f.require(j, path, "cwd")), J("cwd")));
  if (!p.cwd.starts_with('/'))
    return f.fail(J("cwd"), fmt::format("\"{}\" must be an absolute path", p.cwd));
  if (const Json* v = JsonFields::find(j, "capabilities"))
    p.capabilities = TRY(parse_capabilities(f, *v, J("capabilities"), warnings));
  if (const Json* v = JsonFields::find(j, "rlimits"))
    p.rlimits = TRY(parse_rlimits(f, *v, J("rlimits")));
  TRY(f.get(j, path, "noNewPrivileges", p.no_new_privileges));
  TRY(f.get(j, path, "oomScoreAdj", p.oom_score_adj));
  if (p.oom_score_adj && (*p.oom_score_adj < -1000 || *p.oom_score_adj > 1000))
    return f.fail(J("oomScoreAdj"), "must be between -1000 and 1000");
  return p;
}

Result<Config> parse_config(std::string_view text, const fs::path& bundle,
                            std::vector<std::string>* warnings) {
  auto doc = parse_json(text);
  if (!doc) return std::unexpected(std::move(doc.error()).with_context("config.json"));
  JsonFields f("config.json", warnings);
  if (!doc->is_object()) return f.fail("(top level)", "expected an object");
  f.warn_unknown(*doc, "",
                 {"ociVersion", "root", "process", "hostname", "domainname", "mounts", "hooks",
                  "annotations", "linux"});
  Config c;
  c.oci_version = TRY(f.string(*TRY(f.require(*doc, "", "ociVersion")), "ociVersion"));
  if (!c.oci_version.starts_with("1."))
    return f.fail("ociVersion",
                  fmt::format("unsupported version \"{}\" (need 1.x)", c.oci_version));
  TRY(parse_root(f, *doc, bundle, c));
  if (const Json* v = JsonFields::find(*doc, "process"))
    c.process = TRY(parse_process(f, *v, "process", warnings));
  TRY(f.get(*doc, "", "hostname", c.hostname));
  TRY(f.get(*doc, "", "domainname", c.domainname));
  if (const Json* v = JsonFields::find(*doc, "mounts")) c.mounts = TRY(parse_mounts(f, *v));
  if (const Json* v = JsonFields::find(*doc, "hooks")) c.hooks = TRY(parse_hooks(f, *v));
  TRY(f.get(*doc, "", "annotations", c.annotations));
  if (const Json* v = JsonFields::find(*doc, "linux")) c.linux = TRY(parse_linux(f, *v, warnings));
  TRY(check_consistency(f, c));
  return c;
}

Result<Config> load_config(const fs::path& bundle, std::vector<std::string>* warnings) {
  auto text = read_file(bundle / "config.json");
  if (!text) return std::unexpected(std::move(text.error()).with_context("bundle"));
  Config c = TRY(parse_config(*text, bundle, warnings));
  struct stat st;
  if (::stat(c.rootfs.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return make_error(ErrorCode::kInvalidArgument,
                      "config.json: root.path: rootfs directory {} does not exist",
                      c.rootfs.string());
  return c;
}

int capability_from_name(std::string_view name) {
  for (size_t i = 0; i < kCapabilityNames.size(); ++i)
    if (kCapabilityNames[i] == name) return static_cast<int>(i);
  return -1;
}

std::string capability_name(int cap) {
  if (cap < 0 || static_cast<size_t>(cap) >= kCapabilityNames.size())
    return fmt::format("CAP_{}", cap);
  return std::string(kCapabilityNames[static_cast<size_t>(cap)]);
}

int last_known_capability() {
  return static_cast<int>(kCapabilityNames.size()) - 1;
}

}  // namespace vireo::container
