// vireo net / vireo fw: virtual networks (vireo-netd behind vireod): networks, ports, FDB,
// routes, port forwards, connection tracking and firewall rules.
#include "cli/context.h"

namespace vireo::cli {

namespace {

struct NetFlags {
  std::string name, subnet, gateway, iface, destination, via, target, protocol;
  std::string direction = "in", rule_protocol = "any", cidr, port, action = "allow";
  std::vector<std::string> remotes;
  bool dhcp = false, nat = false, uplink = false;
  int vlan = 0, vni = 0, mtu = 0, host_port = 0, id = -1;
};

std::string base(const std::string& name) {
  return "/1.0/networks/" + name;
}

Result<Json> get(Context& ctx, const std::string& path) {
  return TRY(TRY(ctx.client())->request("GET", path)).body;
}

Result<void> send(Context& ctx, std::string_view method, const std::string& path,
                  const Json* body = nullptr) {
  TRY(TRY(ctx.client())->request(method, path, body));
  return {};
}

// Prints a JSON list as a table of the given fields (header = field names upper-cased).
void print_list(Context& ctx, const Json& items, const std::vector<std::string>& fields) {
  std::vector<std::vector<std::string>> rows(1);
  for (const auto& f : fields) {
    std::string h = f;
    for (char& c : h) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    rows[0].push_back(h);
  }
  for (const auto& item : items) {
    std::vector<std::string> row;
    for (const auto& f : fields) {
      const Json v = item.value(f, Json());
      row.push_back(v.is_structured() ? dump_json(v) : plain(v));
    }
    rows.push_back(row);
  }
  print(ctx.format(), items, rows);
}

Json create_body(const NetFlags& f) {
  Json body{{"name", f.name}, {"subnet", f.subnet}};
  if (!f.gateway.empty()) body["gateway"] = f.gateway;
  if (f.dhcp) body["dhcp"] = true;
  if (f.nat) body["nat"] = true;
  if (f.uplink) body["uplink"] = true;
  if (f.vlan) body["vlan"] = f.vlan;
  if (f.mtu) body["mtu"] = f.mtu;
  if (f.vni) body["vxlan"] = Json{{"vni", f.vni}, {"remotes", f.remotes}};
  return body;
}

void print_network(Context& ctx, const Json& n) {
  std::vector<std::vector<std::string>> rows = {{"name:", plain(n["name"])},
                                                {"subnet:", plain(n.value("subnet", Json()))},
                                                {"gateway:", plain(n.value("gateway", Json()))},
                                                {"dhcp:", plain(n.value("dhcp", Json(false)))},
                                                {"nat:", plain(n.value("nat", Json(false)))},
                                                {"mtu:", plain(n.value("mtu", Json()))}};
  if (n.contains("vlan")) rows.push_back({"vlan:", plain(n["vlan"])});
  if (n.contains("vxlan")) rows.push_back({"vxlan:", dump_json(n["vxlan"])});
  if (n.contains("ports")) rows.push_back({"ports:", dump_json(n["ports"])});
  print(ctx.format(), n, rows);
}

template <typename F>
void run(CLI::App* cmd, Context& ctx, F body) {
  cmd->callback([&ctx, body] { ctx.outcome = body(); });
}

void add_network_basics(CLI::App* noun, Context& ctx, NetFlags& f) {
  auto* create = noun->add_subcommand("create", "Create a network");
  create->add_option("name", f.name)->required();
  create->add_option("--subnet", f.subnet, "IPv4 subnet, e.g. 10.10.0.0/24")->required();
  create->add_option("--gateway", f.gateway, "Router address (default with --dhcp/--nat: .1)");
  create->add_flag("--dhcp", f.dhcp, "Serve DHCP on the network");
  create->add_flag("--nat", f.nat, "Masquerade traffic routed to the uplink network");
  create->add_flag("--uplink", f.uplink,
                   "The outside LAN: its gateway address (owned by vireo-netd) is the NAT address "
                   "and receives port forwards and published ports");
  create->add_option("--vlan", f.vlan, "802.1Q VLAN id (1-4094)");
  create->add_option("--mtu", f.mtu, "MTU (1500; 1450 with --vxlan)");
  create->add_option("--vxlan", f.vni, "Carry the network over a VXLAN overlay with this VNI");
  create->add_option("--remote", f.remotes, "A VXLAN remote VTEP address (repeatable)");
  run(create, ctx, [&ctx, &f]() -> Result<void> {
    Json body = create_body(f);
    return send(ctx, "POST", "/1.0/networks", &body);
  });

  run(noun->add_subcommand("ls", "List networks"), ctx, [&ctx]() -> Result<void> {
    print_list(ctx, TRY(get(ctx, "/1.0/networks")),
               {"name", "subnet", "gateway", "dhcp", "nat", "uplink", "vlan", "mtu"});
    return {};
  });

  auto* show = noun->add_subcommand("show", "Show a network and its ports");
  show->add_option("name", f.name)->required();
  run(show, ctx, [&ctx, &f]() -> Result<void> {
    print_network(ctx, TRY(get(ctx, base(f.name))));
    return {};
  });

  auto* rm = noun->add_subcommand("rm", "Delete a network (it must have no ports)");
  rm->add_option("name", f.name)->required();
  run(rm, ctx, [&ctx, &f] { return send(ctx, "DELETE", base(f.name)); });

  auto* fdb = noun->add_subcommand("fdb", "Show the MAC addresses learned on a network");
  fdb->add_option("name", f.name)->required();
  run(fdb, ctx, [&ctx, &f]() -> Result<void> {
    print_list(ctx, TRY(get(ctx, base(f.name) + "/fdb")), {"mac", "port", "network"});
    return {};
  });

  auto* conntrack = noun->add_subcommand("conntrack", "List tracked connections");
  conntrack->add_option("name", f.name)->required();
  run(conntrack, ctx, [&ctx, &f]() -> Result<void> {
    print_list(ctx, TRY(get(ctx, base(f.name) + "/conntrack")),
               {"protocol", "src", "sport", "dst", "dport", "state", "packets", "nat"});
    return {};
  });
}

void add_port_commands(CLI::App* noun, Context& ctx, NetFlags& f) {
  auto* port = noun->add_subcommand("port", "Attach host interfaces (e.g. veth ends) to networks");
  port->require_subcommand(1);
  auto* add = port->add_subcommand("add", "Attach an interface to a network");
  add->add_option("network", f.name)->required();
  add->add_option("--iface", f.iface, "Existing interface, e.g. the host end of a veth")
      ->required();
  run(add, ctx, [&ctx, &f] {
    Json body{{"iface", f.iface}};
    return send(ctx, "POST", base(f.name) + "/ports", &body);
  });
  auto* ls = port->add_subcommand("ls", "List a network's ports");
  ls->add_option("network", f.name)->required();
  run(ls, ctx, [&ctx, &f]() -> Result<void> {
    print_list(ctx, TRY(get(ctx, base(f.name) + "/ports")),
               {"iface", "tap", "mtu", "worker", "stats"});
    return {};
  });
  auto* rm = port->add_subcommand("rm", "Detach an interface");
  rm->add_option("network", f.name)->required();
  rm->add_option("--iface", f.iface)->required();
  run(rm, ctx, [&ctx, &f] { return send(ctx, "DELETE", base(f.name) + "/ports/" + f.iface); });
}

void add_route_commands(CLI::App* noun, Context& ctx, NetFlags& f) {
  auto* route = noun->add_subcommand("route", "Static routes (host-wide in vireo-netd)");
  route->require_subcommand(1);
  auto* add = route->add_subcommand("add", "Add a route");
  add->add_option("network", f.name)->required();
  add->add_option("destination", f.destination, "CIDR, e.g. 0.0.0.0/0")->required();
  add->add_option("via", f.via, "Next hop in a routed network")->required();
  run(add, ctx, [&ctx, &f] {
    Json body{{"destination", f.destination}, {"via", f.via}};
    return send(ctx, "POST", base(f.name) + "/routes", &body);
  });
  auto* ls = route->add_subcommand("ls", "List routes");
  ls->add_option("network", f.name)->required();
  run(ls, ctx, [&ctx, &f]() -> Result<void> {
    print_list(ctx, TRY(get(ctx, base(f.name) + "/routes")), {"destination", "via"});
    return {};
  });
  auto* rm = route->add_subcommand("rm", "Delete a route");
  rm->add_option("network", f.name)->required();
  rm->add_option("destination", f.destination)->required();
  run(rm, ctx, [&ctx, &f] {
    return send(ctx, "DELETE", base(f.name) + "/routes?destination=" + f.destination);
  });
}

void add_forward_commands(CLI::App* noun, Context& ctx, NetFlags& f) {
  auto* fwd = noun->add_subcommand("forward", "Port forwards from the uplink to an instance");
  fwd->require_subcommand(1);
  auto* add = fwd->add_subcommand("add", "Forward a host port to IP:PORT in a network");
  add->add_option("network", f.name)->required();
  add->add_option("host_port", f.host_port)->required();
  add->add_option("target", f.target, "IP:PORT in the network")->required();
  add->add_option("--protocol", f.protocol, "tcp (default) or udp");
  run(add, ctx, [&ctx, &f] {
    Json body{{"host_port", f.host_port}, {"target", f.target}};
    if (!f.protocol.empty()) body["protocol"] = f.protocol;
    return send(ctx, "POST", base(f.name) + "/forwards", &body);
  });
  auto* ls = fwd->add_subcommand("ls", "List a network's port forwards");
  ls->add_option("network", f.name)->required();
  run(ls, ctx, [&ctx, &f]() -> Result<void> {
    print_list(ctx, TRY(get(ctx, base(f.name) + "/forwards")), {"protocol", "host_port", "to"});
    return {};
  });
  auto* rm = fwd->add_subcommand("rm", "Delete a port forward");
  rm->add_option("network", f.name)->required();
  rm->add_option("host_port", f.host_port)->required();
  rm->add_option("--protocol", f.protocol, "tcp (default) or udp");
  run(rm, ctx, [&ctx, &f] {
    std::string path = base(f.name) + "/forwards/" + std::to_string(f.host_port);
    if (!f.protocol.empty()) path += "?protocol=" + f.protocol;
    return send(ctx, "DELETE", path);
  });
}

void add_firewall_commands(CLI::App& app, Context& ctx, NetFlags& f) {
  auto* fw = app.add_subcommand("fw", "Firewall rules of networks (routed traffic)");
  fw->require_subcommand(1);
  auto* rule = fw->add_subcommand("rule", "Manage firewall rules");
  rule->require_subcommand(1);
  auto* add = rule->add_subcommand("add", "Add a rule");
  add->add_option("network", f.name)->required();
  add->add_option("--direction", f.direction, "in or out")->capture_default_str();
  add->add_option("--protocol", f.rule_protocol, "tcp, udp, icmp or any")->capture_default_str();
  add->add_option("--cidr", f.cidr, "Remote addresses, e.g. 192.0.2.0/24");
  add->add_option("--port", f.port, "Destination port or range: 80, 8000-8080");
  add->add_option("--action", f.action, "allow or deny")->capture_default_str();
  run(add, ctx, [&ctx, &f] {
    Json body{{"direction", f.direction}, {"protocol", f.rule_protocol}, {"action", f.action}};
    if (!f.cidr.empty()) body["cidr"] = f.cidr;
    if (!f.port.empty()) body["port"] = f.port;
    return send(ctx, "POST", base(f.name) + "/firewall/rules", &body);
  });
  auto* ls = rule->add_subcommand("ls", "List a network's rules and policy");
  ls->add_option("network", f.name)->required();
  run(ls, ctx, [&ctx, &f]() -> Result<void> {
    Json reply = TRY(get(ctx, base(f.name) + "/firewall/rules"));
    print_list(ctx, reply.value("rules", Json::array()),
               {"id", "direction", "protocol", "cidr", "port", "action", "hits"});
    return {};
  });
  auto* rm = rule->add_subcommand("rm", "Delete a rule");
  rm->add_option("network", f.name)->required();
  rm->add_option("id", f.id)->required();
  run(rm, ctx, [&ctx, &f] {
    return send(ctx, "DELETE", base(f.name) + "/firewall/rules/" + std::to_string(f.id));
  });
}

}  // namespace

void add_network_commands(CLI::App& app, Context& ctx) {
  static NetFlags flags;
  auto* noun = app.add_subcommand("net", "Manage virtual networks (vireo-netd)");
  noun->alias("network");
  noun->require_subcommand(1);
  add_network_basics(noun, ctx, flags);
  add_port_commands(noun, ctx, flags);
  add_route_commands(noun, ctx, flags);
  add_forward_commands(noun, ctx, flags);
  add_firewall_commands(app, ctx, flags);
}

}  // namespace vireo::cli
