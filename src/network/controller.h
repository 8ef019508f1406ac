#pragma once
// Controller: the configuration side of vireo-netd. It turns control requests (JSON objects,
// one per line on the control socket) into changes of the datapath: networks, ports, routes;
// it answers queries (ports with statistics, FDB, drops) and persists the configuration under
// the state directory so a restarted vireo-netd comes back with the same networks and ports.
// Not thread-safe: the control thread calls it while the datapath workers are paused.
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "network/datapath.h"
#include "network/ipv4.h"

namespace vireo::net {

class DhcpServer;
class DnsResponder;
class Firewall;
class Router;
class VxlanPort;

struct VxlanSpec {
  uint32_t vni = 0;  // 0: not a VXLAN network
  std::vector<uint32_t> remotes;
};

struct NetworkSpec {
  std::string name;
  Cidr subnet;
  uint32_t gateway = 0;  // 0: no router leg in this network
  uint16_t vlan = 0;     // 802.1Q id on trunks, 0: untagged only
  uint32_t mtu = 1500;
  bool dhcp = false;    // serve DHCP (needs a gateway)
  bool nat = false;     // masquerade traffic routed to an uplink network (needs a gateway)
  bool uplink = false;  // the gateway address is the NAT address (needs a gateway)
  VxlanSpec vxlan;
};

struct PortSpec {
  std::string ifname;
  bool tap = false;                   // created by vireo-netd rather than attached
  std::vector<std::string> networks;  // one for an access port; the tagged ones for a trunk
  bool trunk = false;
  std::string native;       // trunk: network of untagged frames
  uint32_t mtu = 0;         // 0: the smallest MTU of its networks
  std::string ring = "v2";  // AF_PACKET ports: "v2" (per-frame wake-up) or "v3"
};

class Controller {
 public:
  // Called when a device port appears (add) or goes (remove), so the poll loop watches its fd.
  using PortWatcher = std::function<void(PortId id, int fd, bool add)>;

  // state_dir empty: nothing is persisted. vxlan_local: the address VXLAN is sent from and
  // received on (0: any), this host's VTEP address.
  Controller(Datapath& datapath, std::filesystem::path state_dir, PortWatcher watcher,
             uint32_t vxlan_local = 0);
  ~Controller();

  // Answers one request: {"op": "...", ...} → {"ok": true, ...} or {"ok": false, "error": ...}.
  Json handle(const Json& request);
  // The same for one line of text; the reply is one line without the newline.
  std::string handle_line(std::string_view line);
  // Re-creates the saved networks and ports; ports whose device is gone are logged and skipped.
  [[nodiscard]] Result<void> restore();
  // Periodic work (FDB aging, router neighbour aging, saving DHCP leases).
  void tick(uint64_t now_ns);
  // Saves the state if DHCP leases were granted, renewed or released on the packet path since
  // the last save (so that work stays off it).
  void save_leases();

 private:
  struct Network {
    NetworkSpec spec;
    uint16_t id = 0;  // internal VLAN id in the switch
    PortId router_port = kNoPort;
  };
  struct PortEntry {
    PortSpec spec;
    PortId id = kNoPort;
  };

  Result<Json> dispatch(const std::string& op, const Json& request);
  Result<Json> create_network(const NetworkSpec& spec);
  Result<Json> delete_network(const std::string& name);
  Result<Json> list_networks() const;
  Result<Json> attach_port(const PortSpec& spec);
  Result<Json> detach_port(const std::string& ifname);
  Result<Json> list_ports() const;
  Result<Json> dump_fdb(const std::string& network) const;
  Result<Json> stats() const;
  Result<Json> route(const std::string& op, const Json& request);
  Result<Json> firewall(const std::string& op, const Json& request);
  Result<Json> conntrack() const;
  Result<Json> dhcp(const std::string& op, const Json& request);
  Result<Json> forward(const std::string& op, const Json& request);
  Result<Json> dns(const std::string& op, const Json& request);
  Result<Json> vxlan(const std::string& op, const Json& request);
  Result<void> attach_vxlan(const Network& network);
  void detach_vxlan(const Network& network);
  VxlanPort* vxlan_port() const;
  Json firewall_state() const;
  Result<const Network*> find_network(const Json& request) const;
  Result<PortConfig> port_config(const PortSpec& spec) const;
  Result<uint16_t> allocate_id(uint16_t vlan) const;
  const Network* network_by_id(uint16_t id) const;
  Result<void> save() const;

  Datapath& datapath_;
  std::filesystem::path state_dir_;
  PortWatcher watcher_;
  uint32_t vxlan_local_ = 0;
  std::unique_ptr<Firewall> firewall_;
  std::unique_ptr<DhcpServer> dhcp_;
  std::unique_ptr<DnsResponder> dns_;
  std::unique_ptr<Router> router_;
  std::map<std::string, Network> networks_;
  std::map<std::string, PortEntry> ports_;
  PortId vxlan_port_ = kNoPort;          // the VXLAN endpoint, while a network has a VNI
  bool restoring_ = false;               // no saving while the saved state is being replayed
  uint64_t saved_lease_generation_ = 0;  // the DHCP leases as last saved
};

[[nodiscard]] Result<NetworkSpec> network_spec_from_json(const Json& j);
[[nodiscard]] Result<PortSpec> port_spec_from_json(const Json& j);
Json to_json(const NetworkSpec& spec);
Json to_json(const PortSpec& spec);

}  // namespace vireo::net
