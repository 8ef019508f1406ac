#include "network/controller.h"

#include <spdlog/spdlog.h>

#include <cstdio>

#include "base/file.h"
#include "base/strings.h"
#include "network/dhcp_server.h"
#include "network/dns_responder.h"
#include "network/firewall.h"
#include "network/packet_port.h"
#include "network/router.h"
#include "network/tap_port.h"
#include "network/vxlan_port.h"

namespace vireo::net {
namespace {

constexpr uint16_t kFirstUntaggedId = 4096;
constexpr const char* kStateFile = "netd.json";

Result<uint32_t> get_uint(const Json& j, const char* key, uint32_t fallback, uint32_t max) {
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (!it->is_number_unsigned() || it->get<uint64_t>() > max)
    return make_error(ErrorCode::kInvalidArgument, "'{}' must be an integer from 0 to {}", key,
                      max);
  return static_cast<uint32_t>(it->get<uint64_t>());
}

Result<MacKey> parse_mac_key(const std::string& text) {
  unsigned b[6];
  char tail;
  if (std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4],
                  &b[5], &tail) != 6)
    return make_error(ErrorCode::kInvalidArgument, "invalid MAC address '{}'", text);
  MacKey mac = 0;
  for (unsigned v : b) mac = mac << 8 | v;
  return mac;
}

Json error_reply(const Error& e) {
  return Json{{"ok", false}, {"error", e.message()}, {"code", std::string(to_string(e.code()))}};
}

}  // namespace

Result<NetworkSpec> network_spec_from_json(const Json& j) {
  NetworkSpec s;
  s.name = TRY(get_string(j, "name"));
  TRY(validate_name(s.name, "network"));
  s.subnet = TRY(parse_cidr(TRY(get_string(j, "subnet"))));
  std::string gw = TRY(get_string(j, "gateway", false));
  if (!gw.empty()) {
    s.gateway = TRY(parse_ipv4(gw));
    if (!s.subnet.contains(s.gateway) || s.gateway == s.subnet.addr)
      return make_error(ErrorCode::kInvalidArgument, "gateway {} is not a host of {}", gw,
                        format_cidr(s.subnet));
  }
  s.vlan = static_cast<uint16_t>(TRY(get_uint(j, "vlan", 0, 4094)));
  if (auto it = j.find("vxlan"); it != j.end()) {
    if (!it->is_object())
      return make_error(ErrorCode::kInvalidArgument, "'vxlan' must be an object with 'vni'");
    s.vxlan.vni = TRY(get_uint(*it, "vni", 0, 0xffffff));
    if (s.vxlan.vni == 0)
      return make_error(ErrorCode::kInvalidArgument, "'vxlan' needs a VNI from 1 to 16777215");
    if (auto r = it->find("remotes"); r != it->end()) {
      if (!r->is_array())
        return make_error(ErrorCode::kInvalidArgument, "'remotes' must be a list of addresses");
      for (const Json& ip : *r) {
        if (!ip.is_string())
          return make_error(ErrorCode::kInvalidArgument, "'remotes' holds IPv4 addresses");
        s.vxlan.remotes.push_back(TRY(parse_ipv4(ip.get<std::string>())));
      }
    }
  }
  // Encapsulation takes 50 bytes of a 1500-byte underlay.
  s.mtu = TRY(get_uint(j, "mtu", s.vxlan.vni ? 1500 - VxlanPort::kOverhead : 1500, 65535));
  if (s.mtu < 576) return make_error(ErrorCode::kInvalidArgument, "mtu {} is below 576", s.mtu);
  if (auto it = j.find("dhcp"); it != j.end()) {
    if (!it->is_boolean())
      return make_error(ErrorCode::kInvalidArgument, "'dhcp' must be a boolean");
    s.dhcp = it->get<bool>();
  }
  for (auto [key, flag] : {std::pair{"nat", &s.nat}, std::pair{"uplink", &s.uplink}}) {
    auto it = j.find(key);
    if (it == j.end()) continue;
    if (!it->is_boolean())
      return make_error(ErrorCode::kInvalidArgument, "'{}' must be a boolean", key);
    *flag = it->get<bool>();
  }
  if (s.dhcp && !s.gateway)
    return make_error(ErrorCode::kInvalidArgument, "DHCP needs a gateway address");
  if ((s.nat || s.uplink) && !s.gateway)
    return make_error(ErrorCode::kInvalidArgument, "NAT needs a gateway address");
  if (s.nat && s.uplink)
    return make_error(ErrorCode::kInvalidArgument, "a network is either 'nat' or 'uplink'");
  return s;
}

Json to_json(const NetworkSpec& s) {
  Json j{{"name", s.name}, {"subnet", format_cidr(s.subnet)}, {"mtu", s.mtu}};
  if (s.gateway) j["gateway"] = format_ipv4(s.gateway);
  if (s.vlan) j["vlan"] = s.vlan;
  if (s.dhcp) j["dhcp"] = true;
  if (s.nat) j["nat"] = true;
  if (s.uplink) j["uplink"] = true;
  if (s.vxlan.vni) {
    Json remotes = Json::array();
    for (uint32_t ip : s.vxlan.remotes) remotes.push_back(format_ipv4(ip));
    j["vxlan"] = Json{{"vni", s.vxlan.vni}, {"remotes", remotes}};
  }
  return j;
}

Result<PortSpec> port_spec_from_json(const Json& j) {
  PortSpec s;
  std::string iface = TRY(get_string(j, "iface", false));
  std::string tap = TRY(get_string(j, "tap", false));
  if (iface.empty() == tap.empty())
    return make_error(ErrorCode::kInvalidArgument, "give exactly one of 'iface' and 'tap'");
  s.tap = !tap.empty();
  s.ifname = s.tap ? tap : iface;
  TRY(validate_name(s.ifname, "interface"));
  if (s.ifname.size() > 15)
    return make_error(ErrorCode::kInvalidArgument, "interface name '{}' is too long", s.ifname);
  s.mtu = TRY(get_uint(j, "mtu", 0, 65535));
  s.ring = TRY(get_string(j, "ring", false));
  if (s.ring.empty()) s.ring = "v2";
  if (s.ring != "v2" && s.ring != "v3")
    return make_error(ErrorCode::kInvalidArgument, "ring must be \"v2\" or \"v3\"");
  auto trunk = j.find("trunk");
  if (trunk == j.end()) {
    s.networks.push_back(TRY(get_string(j, "network")));
    return s;
  }
  if (!trunk->is_array())
    return make_error(ErrorCode::kInvalidArgument, "'trunk' must be a list of network names");
  s.trunk = true;
  for (const Json& n : *trunk) {
    if (!n.is_string()) return make_error(ErrorCode::kInvalidArgument, "'trunk' holds names");
    s.networks.push_back(n.get<std::string>());
  }
  s.native = TRY(get_string(j, "native", false));
  return s;
}

Json to_json(const PortSpec& s) {
  Json j{{s.tap ? "tap" : "iface", s.ifname}};
  if (s.trunk) {
    j["trunk"] = s.networks;
    if (!s.native.empty()) j["native"] = s.native;
  } else {
    j["network"] = s.networks.at(0);
  }
  if (s.mtu) j["mtu"] = s.mtu;
  if (!s.tap) j["ring"] = s.ring;
  return j;
}

Controller::Controller(Datapath& datapath, std::filesystem::path state_dir, PortWatcher watcher,
                       uint32_t vxlan_local)
    : datapath_(datapath),
      state_dir_(std::move(state_dir)),
      watcher_(std::move(watcher)),
      vxlan_local_(vxlan_local),
      firewall_(std::make_unique<Firewall>()),
      dhcp_(std::make_unique<DhcpServer>()),
      dns_(std::make_unique<DnsResponder>(dhcp_.get())),
      router_(std::make_unique<Router>(datapath, firewall_.get(), dhcp_.get(), dns_.get())) {}

Controller::~Controller() {
  for (auto& [name, p] : ports_)
    if (watcher_ && datapath_.port(p.id)) watcher_(p.id, datapath_.port(p.id)->fd(), false);
}

std::string Controller::handle_line(std::string_view line) {
  Result<Json> request = parse_json(line);
  if (!request) return dump_json(error_reply(request.error()));
  return dump_json(handle(*request));
}

Json Controller::handle(const Json& request) {
  if (!request.is_object())
    return error_reply(Error(ErrorCode::kInvalidArgument, "request must be a JSON object"));
  Result<std::string> op = get_string(request, "op");
  if (!op) return error_reply(op.error());
  Result<Json> reply = dispatch(*op, request);
  if (!reply) return error_reply(std::move(reply.error()).with_context(*op));
  Json out = std::move(*reply);
  out["ok"] = true;
  return out;
}

Result<Json> Controller::dispatch(const std::string& op, const Json& r) {
  if (op == "network.create") return create_network(TRY(network_spec_from_json(r)));
  if (op == "network.delete") return delete_network(TRY(get_string(r, "name")));
  if (op == "network.list") return list_networks();
  if (op == "port.attach") return attach_port(TRY(port_spec_from_json(r)));
  if (op == "port.detach") return detach_port(TRY(get_string(r, "name")));
  if (op == "port.list") return list_ports();
  if (op == "fdb.dump") return dump_fdb(TRY(get_string(r, "network", false)));
  if (op == "stats") return stats();
  if (op.starts_with("route.")) return route(op, r);
  if (op.starts_with("firewall.")) return firewall(op, r);
  if (op == "conntrack.list") return conntrack();
  if (op.starts_with("dhcp.")) return dhcp(op, r);
  if (op.starts_with("forward.")) return forward(op, r);
  if (op.starts_with("dns.")) return dns(op, r);
  if (op.starts_with("vxlan.")) return vxlan(op, r);
  return make_error(ErrorCode::kInvalidArgument, "unknown op '{}'", op);
}

Result<uint16_t> Controller::allocate_id(uint16_t vlan) const {
  if (vlan) {
    if (network_by_id(vlan))
      return make_error(ErrorCode::kAlreadyExists, "VLAN {} is used by another network", vlan);
    return vlan;
  }
  for (uint32_t id = kFirstUntaggedId; id < 0xffff; ++id)
    if (!network_by_id(static_cast<uint16_t>(id))) return static_cast<uint16_t>(id);
  return make_error(ErrorCode::kConflict, "no network id left");
}

const Controller::Network* Controller::network_by_id(uint16_t id) const {
  for (const auto& [name, n] : networks_)
    if (n.id == id) return &n;
  return nullptr;
}

Result<Json> Controller::create_network(const NetworkSpec& spec) {
  if (networks_.contains(spec.name))
    return make_error(ErrorCode::kAlreadyExists, "network {} exists", spec.name);
  for (const auto& [name, n] : networks_)
    if (n.spec.subnet.contains(spec.subnet.addr) || spec.subnet.contains(n.spec.subnet.addr))
      return make_error(ErrorCode::kConflict, "subnet {} overlaps network {}",
                        format_cidr(spec.subnet), name);
  if (spec.vxlan.vni)
    for (const auto& [name, n] : networks_)
      if (n.spec.vxlan.vni == spec.vxlan.vni)
        return make_error(ErrorCode::kAlreadyExists, "VNI {} is used by network {}", spec.vxlan.vni,
                          name);
  Network n{spec, TRY(allocate_id(spec.vlan))};
  if (spec.vxlan.vni) TRY(attach_vxlan(n));
  if (spec.gateway) {
    PortConfig c;
    c.access_vlan = n.id;
    c.mtu = spec.mtu;
    n.router_port = TRY(datapath_.add_internal_port(router_.get(), c));
    LegNat nat = spec.nat ? LegNat::kMasquerade : spec.uplink ? LegNat::kUplink : LegNat::kNone;
    router_->add_leg(n.router_port, spec.subnet, spec.gateway, spec.mtu, nat);
    if (spec.dhcp) dhcp_->enable(n.id, spec.subnet, spec.gateway);
    dns_->enable(n.id, spec.name);
  }
  networks_.emplace(spec.name, n);
  TRY(save());
  spdlog::info("network {} created: {} vlan {}", spec.name, format_cidr(spec.subnet), spec.vlan);
  return Json{{"network", to_json(spec)}};
}

Result<Json> Controller::delete_network(const std::string& name) {
  auto it = networks_.find(name);
  if (it == networks_.end()) return make_error(ErrorCode::kNotFound, "network {} not found", name);
  for (const auto& [ifname, p] : ports_)
    for (const std::string& net : p.spec.networks)
      if (net == name || p.spec.native == name)
        return make_error(ErrorCode::kConflict, "network {} has port {}", name, ifname);
  if (it->second.router_port != kNoPort) {
    router_->remove_leg(it->second.router_port);
    datapath_.remove_port(it->second.router_port);
  }
  if (it->second.spec.vxlan.vni) detach_vxlan(it->second);
  router_->forwards().remove_network(name);
  datapath_.sw().flush_vlan(it->second.id);
  firewall_->remove_network(it->second.id);
  dhcp_->disable(it->second.id);
  dns_->disable(it->second.id);
  networks_.erase(it);
  TRY(save());
  return Json::object();
}

Result<Json> Controller::list_networks() const {
  Json list = Json::array();
  for (const auto& [name, n] : networks_) list.push_back(to_json(n.spec));
  return Json{{"networks", list}};
}

Result<PortConfig> Controller::port_config(const PortSpec& spec) const {
  PortConfig c;
  c.mode = spec.trunk ? VlanMode::kTrunk : VlanMode::kAccess;
  uint32_t mtu = 65535;
  auto lookup = [&](const std::string& name) -> Result<const Network*> {
    auto it = networks_.find(name);
    if (it == networks_.end())
      return make_error(ErrorCode::kNotFound, "network {} not found", name);
    mtu = std::min(mtu, it->second.spec.mtu);
    return &it->second;
  };
  for (const std::string& name : spec.networks) {
    const Network* n = TRY(lookup(name));
    if (!spec.trunk) {
      c.access_vlan = n->id;
    } else if (n->spec.vlan == 0) {
      return make_error(ErrorCode::kInvalidArgument,
                        "network {} has no VLAN id and cannot be carried tagged", name);
    } else {
      c.trunk_vlans.set(n->spec.vlan);
    }
  }
  if (!spec.native.empty()) c.native_vlan = TRY(lookup(spec.native))->id;
  if (spec.networks.empty() && spec.native.empty())
    return make_error(ErrorCode::kInvalidArgument, "a port needs at least one network");
  c.mtu = spec.mtu ? spec.mtu : mtu;
  return c;
}

Result<Json> Controller::attach_port(const PortSpec& spec) {
  if (ports_.contains(spec.ifname))
    return make_error(ErrorCode::kAlreadyExists, "port {} is attached", spec.ifname);
  PortConfig config = TRY(port_config(spec));
  std::unique_ptr<Port> device;
  if (spec.tap)
    device = TRY(TapPort::create(spec.ifname));
  else
    device = TRY(PacketPort::create(
        spec.ifname,
        PacketRingConfig{.version = spec.ring == "v3" ? RingVersion::kV3 : RingVersion::kV2}));
  int fd = device->fd();
  PortId id = TRY(datapath_.add_port(std::move(device), config));
  ports_.emplace(spec.ifname, PortEntry{spec, id});
  if (watcher_) watcher_(id, fd, true);
  TRY(save());
  spdlog::info("port {} attached as {}", spec.ifname, id);
  return Json{{"port", to_json(spec)}, {"id", id}};
}

Result<Json> Controller::detach_port(const std::string& ifname) {
  auto it = ports_.find(ifname);
  if (it == ports_.end()) return make_error(ErrorCode::kNotFound, "port {} not attached", ifname);
  PortId id = it->second.id;
  if (watcher_ && datapath_.port(id)) watcher_(id, datapath_.port(id)->fd(), false);
  datapath_.remove_port(id);
  ports_.erase(it);
  TRY(save());
  return Json::object();
}

Result<Json> Controller::list_ports() const {
  Json list = Json::array();
  for (const auto& [name, p] : ports_) {
    const PortStats& s = datapath_.sw().stats(p.id);
    Port* device = datapath_.port(p.id);
    Json j = to_json(p.spec);
    j["id"] = p.id;
    j["mtu"] = datapath_.sw().config(p.id).mtu;
    j["worker"] = datapath_.owner(p.id);
    j["stats"] = Json{
        {"rx_packets", s.rx_packets}, {"rx_bytes", s.rx_bytes},
        {"rx_dropped", s.rx_dropped}, {"rx_device_dropped", device ? device->device_drops() : 0},
        {"tx_packets", s.tx_packets}, {"tx_bytes", s.tx_bytes},
        {"tx_dropped", s.tx_dropped}};
    list.push_back(j);
  }
  return Json{{"ports", list}};
}

Result<Json> Controller::dump_fdb(const std::string& network) const {
  const Network* only = nullptr;
  if (!network.empty()) {
    auto it = networks_.find(network);
    if (it == networks_.end())
      return make_error(ErrorCode::kNotFound, "network {} not found", network);
    only = &it->second;
  }
  std::map<PortId, std::string> port_names;
  for (const auto& [name, p] : ports_) port_names[p.id] = name;
  Json list = Json::array();
  for (const FdbEntry& e : datapath_.sw().fdb().entries()) {
    if (only && e.vlan != only->id) continue;
    const Network* n = network_by_id(e.vlan);
    auto port = port_names.find(e.port);
    list.push_back(Json{{"network", n ? n->spec.name : ""},
                        {"mac", format_mac(e.mac)},
                        {"port", port != port_names.end() ? port->second : "router"}});
  }
  return Json{{"fdb", list}};
}

Result<Json> Controller::stats() const {
  Json drops = Json::object();
  DropCounters d = datapath_.drops();
  if (VxlanPort* port = vxlan_port())
    for (size_t i = 1; i < d.counts.size(); ++i) d.counts[i] += port->drops()->counts[i];
  for (size_t i = 1; i < d.counts.size(); ++i)
    if (d.counts[i]) drops[drop_reason_name(static_cast<DropReason>(i))] = d.counts[i];
  return Json{{"drops", drops}, {"fdb_entries", datapath_.sw().fdb().size()}};
}

Result<Json> Controller::route(const std::string& op, const Json& r) {
  if (op == "route.list") return Json{{"routes", router_->routes_json()}};
  Cidr dst = TRY(parse_cidr(TRY(get_string(r, "destination"))));
  if (op == "route.delete") {
    TRY(router_->remove_route(dst));
  } else if (op == "route.add") {
    TRY(router_->add_route(dst, TRY(parse_ipv4(TRY(get_string(r, "via"))))));
  } else {
    return make_error(ErrorCode::kInvalidArgument, "unknown op '{}'", op);
  }
  TRY(save());
  return Json::object();
}

Result<const Controller::Network*> Controller::find_network(const Json& r) const {
  std::string name = TRY(get_string(r, "network"));
  auto it = networks_.find(name);
  if (it == networks_.end()) return make_error(ErrorCode::kNotFound, "network {} not found", name);
  return &it->second;
}

Result<Json> Controller::firewall(const std::string& op, const Json& r) {
  const Network* n = TRY(find_network(r));
  if (op == "firewall.rule.list") {
    Json list = Json::array();
    for (const FwRule& rule : firewall_->rules(n->id)) list.push_back(to_json(rule));
    FwPolicy p = firewall_->policy(n->id);
    return Json{{"rules", list},
                {"policy",
                 {{"in", p.in == FwAction::kAllow ? "allow" : "deny"},
                  {"out", p.out == FwAction::kAllow ? "allow" : "deny"}}}};
  }
  if (op == "firewall.policy") {
    FwPolicy p = firewall_->policy(n->id);
    for (auto [key, action] : {std::pair{"in", &p.in}, std::pair{"out", &p.out}}) {
      std::string v = TRY(get_string(r, key, false));
      if (v.empty()) continue;
      if (v != "allow" && v != "deny")
        return make_error(ErrorCode::kInvalidArgument, "policy must be allow or deny");
      *action = v == "allow" ? FwAction::kAllow : FwAction::kDeny;
    }
    firewall_->set_policy(n->id, p);
  } else if (op == "firewall.rule.add") {
    uint32_t id = firewall_->add_rule(n->id, TRY(fw_rule_from_json(r)));
    TRY(save());
    return Json{{"id", id}};
  } else if (op == "firewall.rule.delete") {
    TRY(firewall_->remove_rule(n->id, TRY(get_uint(r, "id", 0, 0xffffffff))));
  } else {
    return make_error(ErrorCode::kInvalidArgument, "unknown op '{}'", op);
  }
  TRY(save());
  return Json::object();
}

Result<Json> Controller::conntrack() const {
  Json list = Json::array();
  for (const Flow& f : firewall_->conntrack().flows()) {
    const char* state = f.state == FlowState::kNew           ? "new"
                        : f.state == FlowState::kEstablished ? "established"
                                                             : "closing";
    Json j{{"protocol", f.key.proto},       {"src", format_ipv4(f.key.src)}, {"sport", f.key.sport},
           {"dst", format_ipv4(f.key.dst)}, {"dport", f.key.dport},          {"state", state},
           {"packets", f.packets}};
    // The tuple the original direction's packets carry after translation.
    if (f.nat)
      j["nat"] = Json{{"src", format_ipv4(f.translated.src)},
                      {"sport", f.translated.sport},
                      {"dst", format_ipv4(f.translated.dst)},
                      {"dport", f.translated.dport}};
    list.push_back(j);
  }
  return Json{{"connections", list}};
}

Result<Json> Controller::dhcp(const std::string& op, const Json& r) {
  const Network* n = TRY(find_network(r));
  if (!dhcp_->enabled(n->id))
    return make_error(ErrorCode::kConflict, "network {} does not serve DHCP", n->spec.name);
  if (op == "dhcp.leases") return Json{{"leases", dhcp_->leases_json(n->id)}};
  if (op != "dhcp.reserve" && op != "dhcp.unreserve" && op != "dhcp.lease.add")
    return make_error(ErrorCode::kInvalidArgument, "unknown op '{}'", op);
  MacKey mac = TRY(parse_mac_key(TRY(get_string(r, "mac"))));
  if (op == "dhcp.lease.add") {
    uint32_t ip = TRY(parse_ipv4(TRY(get_string(r, "ip"))));
    uint64_t seconds =
        TRY(get_uint(r, "seconds", DhcpServer::kLeaseSeconds, DhcpServer::kLeaseSeconds));
    if (seconds == 0)
      return make_error(ErrorCode::kInvalidArgument, "'seconds' must be at least 1");
    TRY(dhcp_->adopt_lease(n->id, mac, ip, TRY(get_string(r, "hostname", false)), router_->now_ns(),
                           seconds * 1'000'000'000ull));
    TRY(save());
    return Json{{"ip", format_ipv4(ip)}};
  }
  if (op == "dhcp.unreserve") {
    if (!dhcp_->unreserve(n->id, mac)) return Json::object();
    TRY(save());
    return Json::object();
  }
  std::string name = TRY(get_string(r, "name", false));
  if (!name.empty() && !valid_dns_label(name))
    return make_error(ErrorCode::kInvalidArgument,
                      "invalid name '{}': letters, digits and hyphens, at most 63", name);
  // Without "ip" the server picks a free address (IPAM for containers).
  std::string ip_text = TRY(get_string(r, "ip", false));
  uint32_t ip = 0;
  if (ip_text.empty()) {
    ip = TRY(dhcp_->reserve_free(n->id, mac, name));
  } else {
    ip = TRY(parse_ipv4(ip_text));
    TRY(dhcp_->reserve(n->id, mac, ip, name));
  }
  TRY(save());
  return Json{{"ip", format_ipv4(ip)}};
}

Result<Json> Controller::forward(const std::string& op, const Json& r) {
  PortForwards& forwards = router_->forwards();
  if (op == "forward.list") {
    Json list = Json::array();
    for (const PortForward& f : forwards.list()) list.push_back(to_json(f));
    return Json{{"forwards", list}};
  }
  if (op == "forward.add") {
    PortForward f = TRY(port_forward_from_json(r));
    auto it = networks_.find(f.network);
    if (it == networks_.end())
      return make_error(ErrorCode::kNotFound, "network {} not found", f.network);
    const NetworkSpec& n = it->second.spec;
    if (!n.gateway)
      return make_error(ErrorCode::kInvalidArgument, "network {} has no gateway to route through",
                        f.network);
    if (!n.subnet.contains(f.ip) || f.ip == n.gateway)
      return make_error(ErrorCode::kInvalidArgument, "{} is not a host of network {} ({})",
                        format_ipv4(f.ip), f.network, format_cidr(n.subnet));
    TRY(forwards.add(f));
  } else if (op == "forward.delete") {
    Json spec = r;
    spec["network"] = "";
    spec["to"] = "0.0.0.0:1";
    PortForward f = TRY(port_forward_from_json(spec));
    TRY(forwards.remove(f.proto, f.host_port));
  } else {
    return make_error(ErrorCode::kInvalidArgument, "unknown op '{}'", op);
  }
  TRY(save());
  return Json::object();
}

Result<Json> Controller::dns(const std::string& op, const Json& r) {
  const Network* n = TRY(find_network(r));
  if (!n->spec.gateway)
    return make_error(ErrorCode::kConflict, "network {} has no gateway to answer DNS on",
                      n->spec.name);
  if (op == "dns.list") return Json{{"names", dns_->names_json(n->id)}};
  std::string name = TRY(get_string(r, "name"));
  if (op == "dns.register") {
    uint32_t ip = TRY(parse_ipv4(TRY(get_string(r, "ip"))));
    if (!n->spec.subnet.contains(ip))
      return make_error(ErrorCode::kInvalidArgument, "{} is not in network {} ({})",
                        format_ipv4(ip), n->spec.name, format_cidr(n->spec.subnet));
    TRY(dns_->add(n->id, name, ip));
  } else if (op == "dns.unregister") {
    TRY(dns_->remove(n->id, name));
  } else {
    return make_error(ErrorCode::kInvalidArgument, "unknown op '{}'", op);
  }
  TRY(save());
  return Json::object();
}

VxlanPort* Controller::vxlan_port() const {
  return vxlan_port_ == kNoPort ? nullptr : static_cast<VxlanPort*>(datapath_.port(vxlan_port_));
}

Result<void> Controller::attach_vxlan(const Network& n) {
  if (vxlan_port_ == kNoPort) {
    std::unique_ptr<VxlanPort> port =
        TRY_CTX(VxlanPort::create(kVxlanPort, vxlan_local_), "VXLAN endpoint");
    int fd = port->fd();
    PortConfig c;
    c.mode = VlanMode::kOverlay;
    c.mtu = 65535;  // the port checks each network's MTU itself
    vxlan_port_ = TRY(datapath_.add_port(std::move(port), c));
    if (watcher_) watcher_(vxlan_port_, fd, true);
  }
  TRY(vxlan_port()->add_segment(n.id, n.spec.vxlan.vni, n.spec.vxlan.remotes, n.spec.mtu));
  PortConfig c = datapath_.sw().config(vxlan_port_);
  c.overlay_networks.push_back(n.id);
  datapath_.sw().set_port(vxlan_port_, c);
  return {};
}

void Controller::detach_vxlan(const Network& n) {
  VxlanPort* port = vxlan_port();
  if (!port) return;
  port->remove_segment(n.id);
  PortConfig c = datapath_.sw().config(vxlan_port_);
  std::erase(c.overlay_networks, n.id);
  if (!c.overlay_networks.empty()) {
    datapath_.sw().set_port(vxlan_port_, c);
    return;
  }
  if (watcher_) watcher_(vxlan_port_, port->fd(), false);
  datapath_.remove_port(vxlan_port_);
  vxlan_port_ = kNoPort;
}

Result<Json> Controller::vxlan(const std::string& op, const Json& r) {
  std::string name = TRY(get_string(r, "network"));
  auto it = networks_.find(name);
  if (it == networks_.end()) return make_error(ErrorCode::kNotFound, "network {} not found", name);
  Network& n = it->second;
  if (!n.spec.vxlan.vni || !vxlan_port())
    return make_error(ErrorCode::kConflict, "network {} has no VXLAN VNI", name);
  if (op == "vxlan.vteps") return Json{{"vxlan", vxlan_port()->vteps_json(n.id)}};
  if (op != "vxlan.remote.add" && op != "vxlan.remote.delete")
    return make_error(ErrorCode::kInvalidArgument, "unknown op '{}'", op);
  uint32_t ip = TRY(parse_ipv4(TRY(get_string(r, "ip"))));
  if (op == "vxlan.remote.add") {
    TRY(vxlan_port()->add_remote(n.id, ip));
    n.spec.vxlan.remotes.push_back(ip);
  } else {
    TRY(vxlan_port()->remove_remote(n.id, ip));
    std::erase(n.spec.vxlan.remotes, ip);
  }
  TRY(save());
  return Json::object();
}

Json Controller::firewall_state() const {
  Json list = Json::array();
  for (const auto& [name, n] : networks_) {
    FwPolicy p = firewall_->policy(n.id);
    Json rules = Json::array();
    for (const FwRule& rule : firewall_->rules(n.id)) rules.push_back(to_json(rule));
    list.push_back(Json{{"network", name},
                        {"in", p.in == FwAction::kAllow ? "allow" : "deny"},
                        {"out", p.out == FwAction::kAllow ? "allow" : "deny"},
                        {"rules", rules}});
  }
  return list;
}

void Controller::tick(uint64_t now_ns) {
  firewall_->tick(now_ns);
  datapath_.sw().fdb().expire(now_ns);
  router_->tick(now_ns);
  if (VxlanPort* port = vxlan_port()) port->expire(now_ns);
  save_leases();
}

void Controller::save_leases() {
  if (dhcp_->lease_generation() == saved_lease_generation_) return;
  if (auto r = save(); !r) spdlog::warn("save DHCP leases: {}", r.error().message());
  saved_lease_generation_ = dhcp_->lease_generation();
}

Result<void> Controller::save() const {
  if (state_dir_.empty() || restoring_) return {};
  Json j{{"networks", Json::array()},
         {"ports", Json::array()},
         {"routes", router_->routes_json()},
         {"firewall", firewall_state()},
         {"forwards", Json::array()}};
  for (const PortForward& f : router_->forwards().list()) j["forwards"].push_back(to_json(f));
  j["reservations"] = Json::array();
  for (const auto& [name, n] : networks_)
    for (const auto& [mac, lease] : dhcp_->reservations(n.id)) {
      Json r{{"network", name}, {"mac", format_mac(mac)}, {"ip", format_ipv4(lease.ip)}};
      if (!lease.hostname.empty()) r["name"] = lease.hostname;
      j["reservations"].push_back(r);
    }
  // Dynamic leases with the seconds they have left (the clock does not survive a reboot).
  j["leases"] = Json::array();
  const uint64_t now = router_->now_ns();
  for (const auto& [name, n] : networks_)
    for (const auto& [mac, lease] : dhcp_->dynamic_leases(n.id, now)) {
      Json l{{"network", name},
             {"mac", format_mac(mac)},
             {"ip", format_ipv4(lease.ip)},
             {"seconds", std::max<uint64_t>(1, (lease.expires_ns - now) / 1'000'000'000ull)}};
      if (!lease.hostname.empty()) l["hostname"] = lease.hostname;
      j["leases"].push_back(l);
    }
  j["dns"] = Json::array();
  for (const auto& [name, n] : networks_)
    for (const DnsName& d : dns_->registered(n.id))
      j["dns"].push_back(Json{{"network", name}, {"name", d.name}, {"ip", format_ipv4(d.ip)}});
  for (const auto& [name, n] : networks_) j["networks"].push_back(to_json(n.spec));
  for (const auto& [name, p] : ports_) j["ports"].push_back(to_json(p.spec));
  TRY_CTX(make_dirs(state_dir_, 0700), "state directory");
  return write_file_atomic(state_dir_ / kStateFile, dump_json(j, 2) + "\n", 0600);
}

Result<void> Controller::restore() {
  if (state_dir_.empty()) return {};
  std::filesystem::path path = state_dir_ / kStateFile;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return {};
  Json j = TRY_CTX(parse_json(TRY(read_file(path))), "state {}", path.string());
  if (!j.is_object())
    return make_error(ErrorCode::kInvalidArgument, "state {}: not an object", path.string());
  restoring_ = true;
  auto each = [&](const char* key, auto fn) {
    if (!j.contains(key) || !j[key].is_array()) return;
    for (const Json& item : j[key])
      if (Result<Json> r = fn(item); !r) spdlog::warn("restore {}: {}", key, r.error().message());
  };
  each("networks", [&](const Json& n) -> Result<Json> {
    return create_network(TRY(network_spec_from_json(n)));
  });
  each("ports",
       [&](const Json& p) -> Result<Json> { return attach_port(TRY(port_spec_from_json(p))); });
  each("routes", [&](const Json& r) -> Result<Json> { return route("route.add", r); });
  each("forwards", [&](const Json& f) -> Result<Json> { return forward("forward.add", f); });
  each("dns", [&](const Json& d) -> Result<Json> { return dns("dns.register", d); });
  each("reservations", [&](const Json& r) -> Result<Json> { return dhcp("dhcp.reserve", r); });
  each("leases", [&](const Json& l) -> Result<Json> { return dhcp("dhcp.lease.add", l); });
  each("firewall", [&](const Json& f) -> Result<Json> {
    TRY(firewall("firewall.policy", f));
    if (f.contains("rules") && f["rules"].is_array())
      for (Json rule : f["rules"]) {
        rule["network"] = f.value("network", "");
        TRY(firewall("firewall.rule.add", rule));
      }
    return Json::object();
  });
  restoring_ = false;
  return {};
}

}  // namespace vireo::net
