#include "containers/request.h"

#include <arpa/inet.h>
#include <sys/stat.h>

#include <charconv>

#include <algorithm>
#include <array>
#include <cmath>
#include <set>

#include "base/ids.h"
#include "container/config.h"
#include "container/default_spec.h"
#include "image/rootfs.h"

namespace vireo::containers {

namespace {

constexpr std::array<std::string_view, 16> kAdjectives = {
    "brave", "calm",  "eager", "fancy", "gentle", "happy", "jolly", "keen",
    "lucid", "merry", "noble", "proud", "quiet",  "swift", "vivid", "witty"};
constexpr std::array<std::string_view, 16> kNouns = {
    "finch", "heron",  "kestrel", "lark",  "magpie", "oriole", "osprey", "petrel",
    "robin", "shrike", "sparrow", "swift", "tern",   "thrush", "vireo",  "wren"};

Error bad(std::string_view field, std::string_view what) {
  return Error(ErrorCode::kInvalidArgument, fmt::format("field '{}' must be {}", field, what));
}

Result<std::vector<std::string>> string_list(const Json& v, std::string_view field) {
  if (!v.is_array()) return std::unexpected(bad(field, "an array of strings"));
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) return std::unexpected(bad(field, "an array of strings"));
    out.push_back(e.get<std::string>());
  }
  return out;
}

Result<bool> boolean(const Json& v, std::string_view field) {
  if (!v.is_boolean()) return std::unexpected(bad(field, "a boolean"));
  return v.get<bool>();
}

Result<std::string> string(const Json& v, std::string_view field) {
  if (!v.is_string()) return std::unexpected(bad(field, "a string"));
  return v.get<std::string>();
}

Result<int64_t> integer(const Json& v, std::string_view field, int64_t min) {
  if (!v.is_number_integer() || v.get<int64_t>() < min)
    return std::unexpected(bad(field, fmt::format("an integer of at least {}", min)));
  return v.get<int64_t>();
}

// POOL/VOL or VOL: names as storage pools and volumes take them.
bool valid_volume_name(std::string_view v) {
  auto part = [](std::string_view p) {
    return !p.empty() && p.size() <= 128 && std::isalnum(static_cast<unsigned char>(p[0])) &&
           std::all_of(p.begin(), p.end(), [](char c) {
             return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
           });
  };
  auto slash = v.find('/');
  if (slash == std::string_view::npos) return part(v);
  return part(v.substr(0, slash)) && part(v.substr(slash + 1));
}

Result<BindMount> parse_mount(const Json& m) {
  if (!m.is_object()) return std::unexpected(bad("mounts", "an array of objects"));
  BindMount b;
  for (const auto& [k, v] : m.items()) {
    if (k == "source")
      b.source = TRY(string(v, "mounts[].source"));
    else if (k == "volume")
      b.volume = TRY(string(v, "mounts[].volume"));
    else if (k == "target")
      b.target = TRY(string(v, "mounts[].target"));
    else if (k == "read_only")
      b.read_only = TRY(boolean(v, "mounts[].read_only"));
    else
      return make_error(ErrorCode::kInvalidArgument, "unknown field 'mounts[].{}'", k);
  }
  if (!b.volume.empty()) {
    if (!b.source.empty())
      return make_error(ErrorCode::kInvalidArgument,
                        "mounts: give either source (a host path) or volume, not both");
    if (!valid_volume_name(b.volume))
      return make_error(ErrorCode::kInvalidArgument,
                        "mounts: volume '{}': expected VOLUME or POOL/VOLUME", b.volume);
    if (b.volume.find('/') == std::string::npos) b.volume = "default/" + b.volume;
    if (!b.target.starts_with('/'))
      return make_error(ErrorCode::kInvalidArgument, "mounts: target must be an absolute path");
    return b;
  }
  if (!b.source.starts_with('/') || !b.target.starts_with('/'))
    return make_error(ErrorCode::kInvalidArgument,
                      "mounts: source and target must be absolute paths");
  return b;
}

Result<uint16_t> port_number(std::string_view text, std::string_view spec) {
  unsigned v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v == 0 || v > 65535)
    return make_error(
        ErrorCode::kInvalidArgument,
        "port '{}': '{}' is not a port number (1-65535); expected [IP:]HOST:CTR[/udp]", spec, text);
  return static_cast<uint16_t>(v);
}

bool valid_ipv4(std::string_view s) {
  in_addr a{};
  return ::inet_pton(AF_INET, std::string(s).c_str(), &a) == 1;
}

Result<PublishedPort> parse_port_spec_impl(std::string_view spec) {
  PublishedPort p;
  std::string_view rest = spec;
  if (auto slash = rest.rfind('/'); slash != std::string_view::npos) {
    p.protocol = std::string(rest.substr(slash + 1));
    rest = rest.substr(0, slash);
    if (p.protocol != "tcp" && p.protocol != "udp")
      return make_error(ErrorCode::kInvalidArgument,
                        "port '{}': protocol '{}' is neither tcp nor udp", spec, p.protocol);
  }
  auto last = rest.rfind(':');
  if (last == std::string_view::npos)
    return make_error(ErrorCode::kInvalidArgument,
                      "port '{}': expected [IP:]HOST:CTR[/udp], e.g. 8080:80", spec);
  p.container_port = TRY(port_number(rest.substr(last + 1), spec));
  rest = rest.substr(0, last);
  if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    p.host_ip = std::string(rest.substr(0, colon));
    rest = rest.substr(colon + 1);
    if (!valid_ipv4(p.host_ip))
      return make_error(ErrorCode::kInvalidArgument, "port '{}': '{}' is not an IPv4 address", spec,
                        p.host_ip);
  }
  p.host_port = TRY(port_number(rest, spec));
  return p;
}

Json network_json(const CreateRequest& r) {
  switch (r.network) {
    case NetworkMode::kHost:
      return "host";
    case NetworkMode::kNetwork:
      return r.network_name.empty() ? "default" : r.network_name;
    case NetworkMode::kNone:
      break;
  }
  return "none";
}

// An object, or the CLI's "[IP:]HOST:CTR[/udp]".
Result<PublishedPort> parse_port(const Json& m) {
  if (m.is_string()) return parse_port_spec_impl(m.get<std::string>());
  if (!m.is_object()) return std::unexpected(bad("ports", "an array of objects or strings"));
  PublishedPort p;
  for (const auto& [k, v] : m.items()) {
    if (k == "host_ip") {
      p.host_ip = TRY(string(v, "ports[].host_ip"));
    } else if (k == "host_port" || k == "container_port") {
      int64_t n = TRY(integer(v, "ports[]." + k, 1));
      if (n > 65535) return std::unexpected(bad("ports[]." + k, "a port number (1-65535)"));
      (k == "host_port" ? p.host_port : p.container_port) = static_cast<uint16_t>(n);
    } else if (k == "protocol") {
      p.protocol = TRY(string(v, "ports[].protocol"));
    } else {
      return make_error(ErrorCode::kInvalidArgument, "unknown field 'ports[].{}'", k);
    }
  }
  if (p.host_port == 0 || p.container_port == 0)
    return make_error(ErrorCode::kInvalidArgument,
                      "ports: host_port and container_port are required");
  if (p.protocol != "tcp" && p.protocol != "udp")
    return std::unexpected(bad("ports[].protocol", "tcp or udp"));
  if (!valid_ipv4(p.host_ip)) return std::unexpected(bad("ports[].host_ip", "an IPv4 address"));
  return p;
}

// "none", "host" or a network's name.
Result<void> parse_network(const Json& v, CreateRequest& r) {
  std::string n = TRY(string(v, "network"));
  if (n == "none") {
    r.network = NetworkMode::kNone;
  } else if (n == "host") {
    r.network = NetworkMode::kHost;
  } else if (n == "default") {
    r.network = NetworkMode::kNetwork;  // the host's default network, resolved at create
  } else {
    bool ok = !n.empty() && n.size() <= 64 && std::all_of(n.begin(), n.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
    if (!ok)
      return make_error(ErrorCode::kInvalidArgument,
                        "network '{}': expected none, host or the name of a Vireo network", n);
    r.network = NetworkMode::kNetwork;
    r.network_name = n;
  }
  return {};
}

}  // namespace

// Ports need an interface of the container's own, and each host port once.
Result<void> check_network_request(const CreateRequest& r) {
  if (!r.ports.empty() && r.network != NetworkMode::kNetwork)
    return make_error(ErrorCode::kInvalidArgument,
                      "publishing ports needs a Vireo network: with network {} the container has "
                      "no interface of its own",
                      r.network == NetworkMode::kHost ? "host" : "none");
  if (!r.ip.empty() && r.network != NetworkMode::kNetwork)
    return make_error(ErrorCode::kInvalidArgument, "field 'ip' needs a Vireo network");
  if (!r.ip.empty() && !valid_ipv4(r.ip)) return std::unexpected(bad("ip", "an IPv4 address"));
  for (size_t i = 0; i < r.ports.size(); ++i)
    for (size_t j = 0; j < i; ++j) {
      const auto& a = r.ports[i];
      if (ports_overlap(a, r.ports[j]))
        return make_error(ErrorCode::kInvalidArgument, "host port {}/{} is published twice",
                          a.host_port, a.protocol);
    }
  return {};
}

namespace {

// {"command": [...], "interval_ms"?, "timeout_ms"?, "start_period_ms"?, "retries"?}
Result<HealthCheck> parse_health(const Json& v) {
  if (!v.is_object()) return std::unexpected(bad("health", "an object"));
  HealthCheck h;
  auto ms = [](const Json& e, const std::string& field,
               int64_t min) -> Result<std::chrono::milliseconds> {
    int64_t n = TRY(integer(e, field, min));
    if (n > int64_t{24} * 3600 * 1000) return std::unexpected(bad(field, "at most a day"));
    return std::chrono::milliseconds(n);
  };
  for (const auto& [k, e] : v.items()) {
    if (k == "command")
      h.command = TRY(string_list(e, "health.command"));
    else if (k == "interval_ms")
      h.interval = TRY(ms(e, "health.interval_ms", 100));
    else if (k == "timeout_ms")
      h.timeout = TRY(ms(e, "health.timeout_ms", 100));
    else if (k == "start_period_ms")
      h.start_period = TRY(ms(e, "health.start_period_ms", 0));
    else if (k == "retries")
      h.retries = static_cast<int>(std::min<int64_t>(TRY(integer(e, "health.retries", 1)), 1000));
    else
      return make_error(ErrorCode::kInvalidArgument, "unknown field 'health.{}'", k);
  }
  if (h.command.empty() || h.command[0].empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'health.command' is required: the check's program and arguments");
  return h;
}

Result<RestartPolicy> parse_restart(const Json& v) {
  if (!v.is_object()) return std::unexpected(bad("restart", "an object"));
  RestartPolicy p;
  for (const auto& [k, e] : v.items()) {
    if (k == "policy") {
      std::string s = TRY(string(e, "restart.policy"));
      if (s == "no")
        p.kind = RestartKind::kNo;
      else if (s == "on-failure")
        p.kind = RestartKind::kOnFailure;
      else if (s == "always")
        p.kind = RestartKind::kAlways;
      else if (s == "unless-stopped")
        p.kind = RestartKind::kUnlessStopped;
      else
        return make_error(ErrorCode::kInvalidArgument,
                          "restart.policy '{}': expected no, on-failure, always or unless-stopped",
                          s);
    } else if (k == "max_retries") {
      p.max_retries =
          static_cast<int>(std::min<int64_t>(TRY(integer(e, "restart.max_retries", 0)), 1000000));
    } else {
      return make_error(ErrorCode::kInvalidArgument, "unknown field 'restart.{}'", k);
    }
  }
  return p;
}

const char* policy_name(RestartKind k) {
  switch (k) {
    case RestartKind::kOnFailure:
      return "on-failure";
    case RestartKind::kAlways:
      return "always";
    case RestartKind::kUnlessStopped:
      return "unless-stopped";
    case RestartKind::kNo:
      break;
  }
  return "no";
}

// Image env, then the request's: a request variable replaces the image's of the same name.
std::vector<std::string> merge_env(const std::vector<std::string>& base,
                                   const std::vector<std::string>& extra) {
  std::vector<std::string> out = base;
  for (const auto& e : extra) {
    std::string key = e.substr(0, e.find('='));
    auto same = std::find_if(out.begin(), out.end(),
                             [&](const std::string& o) { return o.substr(0, o.find('=')) == key; });
    if (same != out.end())
      *same = e;
    else
      out.push_back(e);
  }
  return out;
}

Result<Json> capabilities(const CreateRequest& r) {
  std::set<std::string> caps;
  for (const auto& c : container::default_capabilities()) caps.insert(c.get<std::string>());
  for (const auto& d : r.cap_drop) {
    if (d == "ALL" || d == "all") {
      caps.clear();
      continue;
    }
    caps.erase(TRY(capability_name(d)));
  }
  for (const auto& a : r.cap_add) {
    if (a == "ALL" || a == "all") {
      for (int c = 0; c <= container::last_known_capability(); ++c)
        caps.insert(container::capability_name(c));
      continue;
    }
    caps.insert(TRY(capability_name(a)));
  }
  return Json(std::vector<std::string>(caps.begin(), caps.end()));
}

}  // namespace

Result<PublishedPort> parse_port_spec(std::string_view spec) {
  return parse_port_spec_impl(spec);
}

bool ports_overlap(const PublishedPort& a, const PublishedPort& b) {
  return a.protocol == b.protocol && a.host_port == b.host_port &&
         (a.host_ip == b.host_ip || a.host_ip == "0.0.0.0" || b.host_ip == "0.0.0.0");
}

Result<std::vector<PublishedPort>> parse_ports(const Json& v) {
  if (!v.is_array()) return std::unexpected(bad("ports", "an array of objects or strings"));
  std::vector<PublishedPort> out;
  for (const auto& p : v) out.push_back(TRY(parse_port(p)));
  return out;
}

std::string monitor_publish_spec(const PublishedPort& p, const std::string& ctr_ip) {
  return fmt::format("{}:{}:{}:{}:{}", p.protocol, p.host_ip, p.host_port, ctr_ip,
                     p.container_port);
}

std::string format_port(const PublishedPort& p) {
  return fmt::format("{}:{}->{}/{}", p.host_ip, p.host_port, p.container_port, p.protocol);
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 128 || !std::isalnum(static_cast<unsigned char>(name[0])))
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

std::string generate_name() {
  std::string hex = random_hex(2);
  unsigned v = std::stoul(hex, nullptr, 16);
  return fmt::format("{}_{}", kAdjectives[v % kAdjectives.size()],
                     kNouns[(v / kAdjectives.size()) % kNouns.size()]);
}

Result<std::string> capability_name(std::string_view name) {
  std::string n(name);
  std::transform(n.begin(), n.end(), n.begin(), [](char c) { return std::toupper(c); });
  if (!n.starts_with("CAP_")) n = "CAP_" + n;
  if (container::capability_from_name(n) < 0)
    return make_error(ErrorCode::kInvalidArgument, "unknown capability '{}'", name);
  return n;
}

Result<CreateRequest> parse_create_request(const Json& body) {
  if (!body.is_object()) return make_error(ErrorCode::kInvalidArgument, "body must be an object");
  CreateRequest r;
  for (const auto& [k, v] : body.items()) {
    if (v.is_null() && k != "image") continue;  // null: absent (the normalized form has them)
    if (k == "image") {
      r.image = TRY(string(v, k));
    } else if (k == "name") {
      r.name = TRY(string(v, k));
    } else if (k == "command") {
      r.command = TRY(string_list(v, k));
    } else if (k == "entrypoint") {
      r.entrypoint = TRY(string_list(v, k));
    } else if (k == "env") {
      r.env = TRY(string_list(v, k));
      for (const auto& e : r.env)
        if (e.empty() || e.front() == '=')
          return make_error(ErrorCode::kInvalidArgument, "env '{}': expected KEY=VALUE", e);
    } else if (k == "workdir") {
      r.workdir = TRY(string(v, k));
      if (!r.workdir.empty() && !r.workdir.starts_with('/'))
        return make_error(ErrorCode::kInvalidArgument, "workdir '{}' must be absolute", r.workdir);
    } else if (k == "user") {
      r.user = TRY(string(v, k));
    } else if (k == "tty") {
      r.tty = TRY(boolean(v, k));
    } else if (k == "stdin") {
      r.stdin_open = TRY(boolean(v, k));
    } else if (k == "read_only") {
      r.read_only = TRY(boolean(v, k));
    } else if (k == "auto_remove") {
      r.auto_remove = TRY(boolean(v, k));
    } else if (k == "no_new_privileges") {
      r.no_new_privileges = TRY(boolean(v, k));
    } else if (k == "memory") {
      r.memory = TRY(integer(v, k, 4 * 1024 * 1024));
    } else if (k == "cpus") {
      if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0 ||
          v.get<double>() > 4096)
        return std::unexpected(bad(k, "a positive number"));
      r.cpus = v.get<double>();
    } else if (k == "pids_limit") {
      r.pids_limit = TRY(integer(v, k, 1));
    } else if (k == "log_max_size") {
      r.log_max_size = TRY(integer(v, k, 4096));
    } else if (k == "log_max_files") {
      r.log_max_files = TRY(integer(v, k, 1));
      if (*r.log_max_files > 100) return std::unexpected(bad(k, "at most 100"));
    } else if (k == "cap_add" || k == "cap_drop") {
      auto caps = TRY(string_list(v, k));
      for (const auto& c : caps)
        if (c != "ALL" && c != "all") TRY(capability_name(c));
      (k == "cap_add" ? r.cap_add : r.cap_drop) = caps;
    } else if (k == "mounts") {
      if (!v.is_array()) return std::unexpected(bad(k, "an array of objects"));
      for (const auto& m : v) r.mounts.push_back(TRY(parse_mount(m)));
    } else if (k == "network") {
      TRY(parse_network(v, r));
    } else if (k == "ip") {
      r.ip = TRY(string(v, k));
    } else if (k == "ports") {
      r.ports = TRY(parse_ports(v));
    } else if (k == "restart") {
      r.restart = TRY(parse_restart(v));
    } else if (k == "health") {
      if (!v.is_null()) r.health = TRY(parse_health(v));
    } else if (k == "labels") {
      if (!v.is_object()) return std::unexpected(bad(k, "an object of strings"));
      for (const auto& [lk, lv] : v.items()) r.labels[lk] = TRY(string(lv, "labels." + lk));
    } else if (k == "start") {
      r.start = TRY(boolean(v, k));
    } else if (k == "wait") {
      r.wait = TRY(boolean(v, k));
    } else {
      return make_error(ErrorCode::kInvalidArgument, "unknown field '{}'", k);
    }
  }
  if (r.image.empty())
    return make_error(ErrorCode::kInvalidArgument, "field 'image' is required (a string)");
  if (!r.name.empty() && !valid_name(r.name))
    return make_error(ErrorCode::kInvalidArgument,
                      "invalid container name '{}': expected [a-zA-Z0-9][a-zA-Z0-9_.-]*", r.name);
  if (r.name == "prune")  // /1.0/containers/prune is the prune action
    return make_error(ErrorCode::kInvalidArgument, "container name 'prune' is reserved");
  if (r.wait && !r.start)
    return make_error(ErrorCode::kInvalidArgument, "field 'wait' needs 'start'");
  TRY(check_network_request(r));
  if (r.restart.kind != RestartKind::kNo && r.auto_remove)
    return make_error(ErrorCode::kInvalidArgument,
                      "auto_remove cannot be combined with a restart policy");
  return r;
}

Json to_json(const CreateRequest& r) {
  Json ports = Json::array();
  for (const auto& p : r.ports)
    ports.push_back({{"host_ip", p.host_ip},
                     {"host_port", p.host_port},
                     {"container_port", p.container_port},
                     {"protocol", p.protocol}});
  Json mounts = Json::array();
  for (const auto& m : r.mounts)
    mounts.push_back(
        m.volume.empty()
            ? Json{{"source", m.source}, {"target", m.target}, {"read_only", m.read_only}}
            : Json{{"volume", m.volume}, {"target", m.target}, {"read_only", m.read_only}});
  Json j = {{"image", r.image},
            {"name", r.name},
            {"command", r.command ? Json(*r.command) : Json(nullptr)},
            {"entrypoint", r.entrypoint ? Json(*r.entrypoint) : Json(nullptr)},
            {"env", r.env},
            {"workdir", r.workdir},
            {"user", r.user},
            {"tty", r.tty},
            {"stdin", r.stdin_open},
            {"read_only", r.read_only},
            {"auto_remove", r.auto_remove},
            {"no_new_privileges", r.no_new_privileges},
            {"memory", r.memory ? Json(*r.memory) : Json(nullptr)},
            {"cpus", r.cpus ? Json(*r.cpus) : Json(nullptr)},
            {"pids_limit", r.pids_limit ? Json(*r.pids_limit) : Json(nullptr)},
            {"log_max_size", r.log_max_size ? Json(*r.log_max_size) : Json(nullptr)},
            {"log_max_files", r.log_max_files ? Json(*r.log_max_files) : Json(nullptr)},
            {"cap_add", r.cap_add},
            {"cap_drop", r.cap_drop},
            {"mounts", mounts},
            {"network", network_json(r)},
            {"ip", r.ip},
            {"ports", ports},
            {"restart",
             {{"policy", policy_name(r.restart.kind)}, {"max_retries", r.restart.max_retries}}},
            {"health", r.health ? Json{{"command", r.health->command},
                                       {"interval_ms", r.health->interval.count()},
                                       {"timeout_ms", r.health->timeout.count()},
                                       {"start_period_ms", r.health->start_period.count()},
                                       {"retries", r.health->retries}}
                                : Json(nullptr)},
            {"labels", r.labels}};
  return j;
}

Result<Json> build_spec(const CreateRequest& r, const std::string& hostname,
                        const image::ImageConfig& image, const std::vector<image::Layer>& layers,
                        const std::filesystem::path& rootfs, const container::SpecOptions& base) {
  image::ImageConfig c = image;
  if (r.entrypoint) {
    c.entrypoint = *r.entrypoint;
    if (!r.command) c.cmd.clear();  // as docker: a new entrypoint drops the image's Cmd
  }
  if (r.command) c.cmd = *r.command;
  std::vector<std::string> defaults = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  if (r.tty) defaults.push_back("TERM=xterm");
  c.env = merge_env(merge_env(defaults, c.env), r.env);
  if (!r.workdir.empty()) c.working_dir = r.workdir;
  if (!r.user.empty()) c.user = r.user;
  if (c.entrypoint.empty() && c.cmd.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "no command: the image has neither Entrypoint nor Cmd and the request gives "
                      "no command");
  image::ProcessConfig process = TRY(image::process_config(c, layers));
  if (!r.user.empty() && !process.uid)
    return make_error(ErrorCode::kInvalidArgument, "user '{}' not found in the image", r.user);

  Json spec = container::default_spec(base);
  image::apply_process_config(process, spec);
  spec["process"]["terminal"] = r.tty;
  spec["process"]["noNewPrivileges"] = r.no_new_privileges;
  spec["process"]["capabilities"] = {};
  Json caps = TRY(capabilities(r));
  for (const char* set : {"bounding", "effective", "permitted"})
    spec["process"]["capabilities"][set] = caps;
  spec["process"]["capabilities"]["ambient"] = Json::array();
  spec["root"] = {{"path", rootfs.string()}, {"readonly", r.read_only}};
  spec["hostname"] = hostname;

  for (const auto& m : r.mounts) {
    if (!m.volume.empty()) continue;  // the engine mounts volumes and adds them
    struct stat st {};
    if (::stat(m.source.c_str(), &st) != 0)
      return make_error(ErrorCode::kNotFound, "bind mount source {}: {}", m.source,
                        std::strerror(errno));
    spec["mounts"].push_back({{"destination", m.target},
                              {"type", "bind"},
                              {"source", m.source},
                              {"options", {"rbind", m.read_only ? "ro" : "rw"}}});
  }

  Json& linux = spec["linux"];
  if (r.network == NetworkMode::kHost) {
    Json namespaces = Json::array();
    for (const auto& ns : linux["namespaces"])
      if (ns.value("type", "") != "network") namespaces.push_back(ns);
    linux["namespaces"] = namespaces;
  }
  Json limits = resources_json(r);
  Json& res = linux["resources"];
  for (auto it = limits.begin(); it != limits.end(); ++it) res[it.key()] = *it;
  return spec;
}

Json resources_json(const CreateRequest& r) {
  Json res = Json::object();
  if (r.memory) res["memory"] = {{"limit", *r.memory}};
  if (r.cpus) {
    constexpr int64_t kPeriod = 100000;
    res["cpu"] = {{"quota", static_cast<int64_t>(std::llround(*r.cpus * kPeriod))},
                  {"period", kPeriod}};
  }
  if (r.pids_limit) res["pids"] = {{"limit", *r.pids_limit}};
  return res;
}

bool should_restart(const RestartPolicy& p, int exit_code, int restarts, bool stopped) {
  if (stopped) return false;
  switch (p.kind) {
    case RestartKind::kNo:
      return false;
    case RestartKind::kOnFailure:
      return exit_code != 0 && (p.max_retries == 0 || restarts < p.max_retries);
    case RestartKind::kAlways:
    case RestartKind::kUnlessStopped:
      return true;
  }
  return false;
}

std::chrono::milliseconds Backoff::delay_after(std::chrono::milliseconds ran) {
  if (ran >= kResetAfter) next = kInitial;
  auto delay = next;
  next = std::min(next * 2, kMax);
  return delay;
}

}  // namespace vireo::containers
