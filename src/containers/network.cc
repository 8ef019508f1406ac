// Containers on Vireo networks: the address reserved at create, the pinned network namespace
// and veth pair made at start (again after a host reboot), the files that name the network's
// DNS server and the container's own address, and the teardown at removal.
#include <arpa/inet.h>

#include "base/file.h"
#include "base/log.h"
#include "containers/engine_impl.h"
#include "network/host/link.h"

namespace vireo::containers {

namespace fs = std::filesystem;

namespace {

fs::path netns_path(const Record& r) {
  return r.dir / "netns";
}

// DNS labels are what the network's DNS responder answers for: letters, digits, hyphens.
bool dns_label(const std::string& name) {
  return !name.empty() && name.size() <= 63 && name.front() != '-' &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
         });
}

// A locally administered unicast MAC from the container's id: stable across restarts.
std::string mac_from_id(const std::string& id) {
  return fmt::format("02:{}:{}:{}:{}:{}", id.substr(0, 2), id.substr(2, 2), id.substr(4, 2),
                     id.substr(6, 2), id.substr(8, 2));
}

Result<uint32_t> ipv4(const std::string& text) {
  in_addr a{};
  if (::inet_pton(AF_INET, text.c_str(), &a) != 1)
    return make_error(ErrorCode::kInvalidArgument, "'{}' is not an IPv4 address", text);
  return ntohl(a.s_addr);
}

Result<net::host::InterfaceConfig> interface_config(const Attachment& a) {
  net::host::InterfaceConfig cfg;
  unsigned b[6];
  if (std::sscanf(a.mac.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3], &b[4],
                  &b[5]) != 6)
    return make_error(ErrorCode::kInvalidArgument, "bad MAC address '{}'", a.mac);
  for (int i = 0; i < 6; ++i) cfg.mac[i] = static_cast<uint8_t>(b[i]);
  cfg.address = TRY(ipv4(a.ip));
  cfg.prefix = a.prefix;
  cfg.gateway = a.gateway.empty() ? 0 : TRY(ipv4(a.gateway));
  cfg.mtu = a.mtu;
  return cfg;
}

}  // namespace

Json to_json(const Attachment& a) {
  return Json{{"network", a.network}, {"iface", a.iface},     {"mac", a.mac}, {"ip", a.ip},
              {"prefix", a.prefix},   {"gateway", a.gateway}, {"mtu", a.mtu}};
}

Result<Attachment> attachment_from_json(const Json& j) {
  if (!j.is_object()) return make_error(ErrorCode::kInvalidArgument, "network: not an object");
  Attachment a;
  try {
    a.network = j.at("network").get<std::string>();
    a.iface = j.at("iface").get<std::string>();
    a.mac = j.at("mac").get<std::string>();
    a.ip = j.at("ip").get<std::string>();
    a.prefix = j.at("prefix").get<int>();
    a.gateway = j.value("gateway", "");
    a.mtu = j.value("mtu", 1500);
  } catch (const Json::exception& e) {
    return make_error(ErrorCode::kInvalidArgument, "network: {}", e.what());
  }
  return a;
}

Result<void> Engine::Impl::check_ports_free(const CreateRequest& req, const Record* self) {
  for (const auto& [id, other] : by_id) {
    if (other.get() == self) continue;
    for (const auto& mine : req.ports)
      for (const auto& theirs : other->req.ports)
        if (ports_overlap(mine, theirs))
          return make_error(ErrorCode::kConflict,
                            "host port {}/{} is already published by container {}", mine.host_port,
                            mine.protocol, other->c.name);
  }
  return {};
}

Result<void> Engine::Impl::reserve_network(CreateRequest& req, Container& c, Rollback& undo) {
  if (req.network == NetworkMode::kNetwork && req.network_name.empty()) {
    req.network_name = o.networks ? o.networks->default_network() : "";
    if (req.network_name.empty()) req.network = NetworkMode::kNone;
  }
  if (req.network != NetworkMode::kNetwork) return {};
  if (!o.networks)
    return make_error(ErrorCode::kUnavailable,
                      "network {}: Vireo networks are not available here; use network none or host",
                      req.network_name);
  Attachment a;
  a.network = req.network_name;
  a.iface = "vc" + c.id.substr(0, 12);
  a.mac = mac_from_id(c.id);
  TRY_CTX(o.networks->reserve(a, req.ip, dns_label(req.name) ? req.name : ""), "network {}",
          a.network);
  undo.add([this, a] { o.networks->release(a); });
  c.network = a;
  return {};
}

Result<void> Engine::Impl::network_spec(const Record& r, Json& spec) {
  if (!r.c.network) return {};
  const Attachment& a = *r.c.network;
  for (auto& ns : spec["linux"]["namespaces"])
    if (ns.value("type", "") == "network") ns["path"] = netns_path(r).string();
  // The network's gateway answers DNS for the names on it (docs/network.md).
  std::string resolv = a.gateway.empty()
                           ? std::string()
                           : fmt::format("nameserver {}\nsearch {}\n", a.gateway, a.network);
  std::string hosts = fmt::format("127.0.0.1\tlocalhost\n::1\tlocalhost\n{}\t{}\n", a.ip, r.c.name);
  TRY(write_file_atomic(r.dir / "resolv.conf", resolv, 0644));
  TRY(write_file_atomic(r.dir / "hosts", hosts, 0644));
  for (const char* name : {"resolv.conf", "hosts"})
    spec["mounts"].push_back({{"destination", fmt::format("/etc/{}", name)},
                              {"type", "bind"},
                              {"source", (r.dir / name).string()},
                              {"options", {"rbind", "ro"}}});
  return {};
}

Result<void> Engine::Impl::ensure_network(Record& r) {
  if (!r.c.network) return {};
  const Attachment& a = *r.c.network;
  if (!o.networks)
    return make_error(ErrorCode::kUnavailable, "network {}: Vireo networks are not available",
                      a.network);
  const fs::path ns = netns_path(r);
  bool fresh = false;
  if (!net::host::netns_alive(ns)) {
    TRY_CTX(net::host::create_netns(ns), "the network namespace of {}", r.c.name);
    fresh = true;
  }
  if (fresh || !net::host::link_exists(a.iface)) {
    // A pair left from before a reboot cannot be reused: its peer lived in the old namespace.
    TRY(net::host::delete_link(a.iface));
    TRY(net::host::create_veth(a.iface, ns, TRY(interface_config(a))));
    o.networks->detach(a);  // a port netd kept for the old interface
  }
  if (auto attached = o.networks->attach(a); !attached) {
    if (attached.error().code() != ErrorCode::kAlreadyExists)
      return std::unexpected(
          std::move(attached.error()).with_context(fmt::format("network {}", a.network)));
  }
  return {};
}

namespace {
// Docker's semantics: a port published on one address (127.0.0.1) stays off other networks.
bool on_all_addresses(const PublishedPort& p) {
  return p.host_ip == "0.0.0.0";
}
}  // namespace

Result<void> Engine::Impl::forward_ports(const Container& c,
                                         const std::vector<PublishedPort>& ports, Rollback& undo) {
  if (!c.network || !o.networks) return {};
  for (const auto& p : ports) {
    if (!on_all_addresses(p)) continue;
    TRY_CTX(o.networks->forward(*c.network, p), "publish port {}/{} on network {}", p.host_port,
            p.protocol, c.network->network);
    undo.add([this, p] { o.networks->unforward(p); });
  }
  return {};
}

void Engine::Impl::unforward_ports(const std::vector<PublishedPort>& ports) {
  if (!o.networks) return;
  for (const auto& p : ports)
    if (on_all_addresses(p)) o.networks->unforward(p);
}

std::vector<std::string> Engine::Impl::network_args(const Record& r) {
  if (!r.c.network) return {};
  std::vector<std::string> args = {"--netns", netns_path(r).string()};
  for (const auto& p : r.req.ports)
    args.insert(args.end(),
                {"--publish", fmt::format("{}:{}:{}:{}:{}", p.protocol, p.host_ip, p.host_port,
                                          r.c.network->ip, p.container_port)});
  return args;
}

void Engine::Impl::teardown_network(Record& r) {
  if (!r.c.network) return;
  const Attachment& a = *r.c.network;
  unforward_ports(r.req.ports);
  if (o.networks) o.networks->detach(a);
  if (auto d = net::host::delete_link(a.iface); !d)
    spdlog::warn("container {}: {}", r.c.name, d.error().message());
  if (auto d = net::host::remove_netns(netns_path(r)); !d)
    spdlog::warn("container {}: {}", r.c.name, d.error().message());
  if (o.networks) o.networks->release(a);
}

}  // namespace vireo::containers
