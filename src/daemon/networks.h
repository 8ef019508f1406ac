#pragma once
// Networks in vireod: one vireo-netd per state root (under <root>/network: its saved
// configuration, control socket, log and pid file), started in its own session, or adopted
// when one already answers there, so forwarding goes on while vireod stops, restarts or dies.
//
// vireo-netd is the source of truth: it persists its configuration and replays it at start,
// so vireod keeps no copy of networks in its store and every /1.0/networks request is
// translated into netd control requests (docs/network.md); netd's errors keep their category
// (404, 409, 400). Lifecycle events for create and delete. Thread-safe (NetdClient serializes).
#include <filesystem>
#include <memory>
#include <mutex>

#include "network/netd_client.h"
#include "server/events.h"
#include "server/router.h"

namespace vireo::daemon {

inline constexpr const char* kDefaultNetwork = "vireo0";

class NetworkManager {
 public:
  // vxlan_local: passed to the vireo-netd started here (--vxlan-local), empty for any address.
  NetworkManager(std::filesystem::path state_root, server::EventHub& events,
                 std::string vxlan_local = {});

  // Adopts or starts vireo-netd and creates the default network when there is none. A failure
  // is logged; requests try again and answer 503 while netd cannot be started.
  void start();
  void add_routes(server::Router& router);

  std::filesystem::path dir() const { return root_ / "network"; }

  // For VM NICs: whether a network exists (kNotFound otherwise), and a host interface (the
  // VM's TAP) attached to it as a port or detached again (detaching a missing port is fine).
  [[nodiscard]] Result<void> require(const std::string& network);
  [[nodiscard]] Result<void> attach_interface(const std::string& network, const std::string& iface);
  void detach_interface(const std::string& iface);

  // For container interfaces, which configure their address themselves: an address of the
  // network reserved for mac in its IPAM (ip, or any free one when empty), with dns_name as its
  // DNS name when given, and the network's settings. kConflict when the network has no DHCP
  // (the IPAM) or no free address.
  struct AddressLease {
    std::string ip;
    int prefix = 24;
    std::string gateway;
    int mtu = 1500;
  };
  [[nodiscard]] Result<AddressLease> reserve_address(const std::string& network,
                                                     const std::string& mac, const std::string& ip,
                                                     const std::string& dns_name);
  void release_address(const std::string& network, const std::string& mac);
  // For a migrating VM: the dynamic DHCP lease mac holds on network ({"ip", "hostname"?}, or
  // null when it has none or the network serves no DHCP), and the same lease taken over by
  // the target's network so the guest keeps its address and its renewals are acknowledged
  // (nothing to do on a network without DHCP).
  [[nodiscard]] Result<Json> dynamic_lease(const std::string& network, const std::string& mac);
  [[nodiscard]] Result<void> adopt_lease(const std::string& network, const std::string& mac,
                                         const Json& lease);
  // Port forwards (DNAT from the uplink address) for published container ports.
  [[nodiscard]] Result<void> add_forward(const std::string& network, uint16_t host_port,
                                         const std::string& to, const std::string& protocol);
  void remove_forward(uint16_t host_port, const std::string& protocol);

 private:
  void add_port_routes(server::Router& router);
  void add_service_routes(server::Router& router);
  [[nodiscard]] Result<void> adopt_or_spawn();
  [[nodiscard]] Result<void> create_default();
  // The reply by value: iterate a copy of a list in it, never TRY(call(...))["list"] directly
  // (the temporary reply would die before the loop runs).
  [[nodiscard]] Result<Json> call(const std::string& op, Json fields = Json::object());
  [[nodiscard]] Result<Json> find(const std::string& name);
  void lifecycle(const std::string& name, const std::string& verb);

  std::filesystem::path root_;
  server::EventHub& events_;
  std::string vxlan_local_;
  std::mutex mutex_;  // guards netd_ (replaced when netd is started again)
  std::unique_ptr<net::NetdClient> netd_;
};

}  // namespace vireo::daemon
