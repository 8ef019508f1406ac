#pragma once
// DhcpServer: answers DHCP (RFC 2131) on the networks that enable it, through the router's leg
// there: DISCOVER → OFFER, REQUEST → ACK or NAK, RELEASE frees the address. Addresses come from
// the subnet (gateway, network and broadcast addresses excluded); static reservations pin a MAC
// to an address. Replies are broadcast, which every client accepts. Leases are kept in memory;
// lease_generation() tells the owner when they changed so it can persist them. Builds replies in
// its own small buffer ring; allocates only when a lease is created. Not thread-safe.
#include <array>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "network/datapath.h"
#include "network/ipv4.h"

namespace vireo::net {

struct DhcpLease {
  uint32_t ip = 0;
  uint64_t expires_ns = 0;  // 0 for a reservation
  std::string hostname;     // option 12 of the client, or the reservation's name
};

class DhcpServer {
 public:
  static constexpr uint32_t kLeaseSeconds = 3600;

  // Serves network (the switch's id) with subnet and gateway, the server's own address.
  void enable(uint16_t network, const Cidr& subnet, uint32_t gateway);
  void disable(uint16_t network);
  bool enabled(uint16_t network) const { return pools_.contains(network); }
  [[nodiscard]] Result<void> reserve(uint16_t network, MacKey mac, uint32_t ip,
                                     const std::string& name = "");
  // A reservation at a free address of the network's pool (the one mac holds already, if any),
  // for instances that configure their address themselves (containers): DHCP never hands it
  // out. kConflict when the subnet is full.
  [[nodiscard]] Result<uint32_t> reserve_free(uint16_t network, MacKey mac,
                                              const std::string& name = "");
  // A dynamic lease of ip for mac from now on, as if this server had granted it: for an instance
  // that brings its address along (a migrated VM), so its renewals are acknowledged. kConflict
  // when another MAC holds ip; a reservation of mac is left as it is.
  [[nodiscard]] Result<void> adopt_lease(uint16_t network, MacKey mac, uint32_t ip,
                                         const std::string& hostname, uint64_t now_ns,
                                         uint64_t lifetime_ns = uint64_t{kLeaseSeconds} *
                                                                1'000'000'000ull);
  // The network's dynamic leases still valid at now_ns (for persistence).
  std::vector<std::pair<MacKey, DhcpLease>> dynamic_leases(uint16_t network, uint64_t now_ns) const;
  // Changes whenever a dynamic lease is granted, renewed or released, so the owner can tell
  // when to save them (off the packet path).
  uint64_t lease_generation() const { return lease_generation_; }
  // Drops mac's reservation or lease; false when it had none.
  bool unreserve(uint16_t network, MacKey mac);
  Json leases_json(uint16_t network) const;
  // The network's static reservations (for persistence).
  std::vector<std::pair<MacKey, DhcpLease>> reservations(uint16_t network) const;
  // Host names of the network's reservations and current leases, for the DNS responder.
  std::vector<std::pair<std::string, uint32_t>> hostnames(uint16_t network) const;
  uint32_t lookup_hostname(uint16_t network, std::string_view name) const;

  // Handles a parsed DHCP message that reached the router's leg on network; a reply frame, if
  // any, is written to out (at least kReplySize bytes) and its length returned.
  uint32_t handle(uint16_t network, MacKey leg_mac, const uint8_t* frame, const ParsedFrame& parsed,
                  uint64_t now_ns, uint8_t* out);
  static constexpr uint32_t kReplySize = 14 + 20 + 8 + 300;

 private:
  struct Pool {
    Cidr subnet;
    uint32_t gateway = 0;
    std::map<MacKey, DhcpLease> leases;
  };
  uint32_t allocate(Pool& pool, MacKey mac, uint64_t now_ns);
  // The lowest address of the pool that no live lease or reservation holds (expired leases
  // found on the way are dropped); 0 when none.
  static uint32_t free_address(Pool& pool, uint64_t now_ns);
  uint64_t now_ns_ = 0;  // of the last message handled, to tell expired leases
  uint64_t lease_generation_ = 0;
  std::map<uint16_t, Pool> pools_;
};

}  // namespace vireo::net
