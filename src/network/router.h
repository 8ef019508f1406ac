#pragma once
// Router: the L3 part of vireo-netd. It has one leg (an internal switch port) in each network
// that has a gateway address; on a leg it answers ARP for the gateway and ICMP echo to it, and
// it forwards IPv4 between networks (connected subnets and static routes, longest prefix
// first): TTL decrement with ICMP time-exceeded, ICMP unreachable without a route, next hops
// resolved by ARP. Frames addressed to the router are rewritten in place and re-injected into
// the switch, so routing copies nothing; only generated packets (ARP, ICMP errors) use the
// router's small buffer ring. The neighbour table allocates only when a new neighbour appears.
// With a firewall (whose connection tracker it shares) it also translates addresses: legs in
// networks marked "nat" are masqueraded behind the gateway address of an uplink network they
// route to, and port forwards send connections to an uplink's gateway address to an instance
// (see nat.h).
// Threads: runs under the datapath's lock; each worker has its own buffers for generated
// packets, since they are sent after the lock is released.
#include <array>
#include <unordered_map>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "network/datapath.h"
#include "network/dhcp_server.h"
#include "network/dns_responder.h"
#include "network/firewall.h"
#include "network/ipv4.h"
#include "network/nat.h"
#include "network/worker.h"

namespace vireo::net {

// What a leg's network does with NAT: masqueraded when it leaves through an uplink, or the
// uplink itself (its gateway address is the NAT address and takes port forwards).
enum class LegNat : uint8_t { kNone, kMasquerade, kUplink };

class Router final : public InternalPortHandler {
 public:
  // firewall (may be null) filters forwarded packets; dhcp (may be null) answers DHCP on the
  // legs, dns (may be null) DNS queries to gateway addresses. All outlive the router.
  Router(Datapath& datapath, Firewall* firewall, DhcpServer* dhcp = nullptr,
         DnsResponder* dns = nullptr);

  void add_leg(PortId port, const Cidr& subnet, uint32_t gateway, uint32_t mtu,
               LegNat nat = LegNat::kNone);
  PortForwards& forwards() { return forwards_; }
  const PortForwards& forwards() const { return forwards_; }
  void remove_leg(PortId port);
  [[nodiscard]] Result<void> add_route(const Cidr& destination, uint32_t via);
  [[nodiscard]] Result<void> remove_route(const Cidr& destination);
  Json routes_json() const;
  void tick(uint64_t now_ns);
  // The router's clock (CLOCK_MONOTONIC_COARSE): connections, neighbours and DHCP leases age by it.
  uint64_t now_ns() const;

  void handle(PortId port, const RxFrame& frame, const ParsedFrame& parsed, uint16_t vlan) override;

  // The MAC address of the leg whose gateway is gateway (stable across restarts).
  static MacKey leg_mac(uint32_t gateway);

 private:
  struct Leg {
    PortId port = kNoPort;
    uint16_t network = 0;  // the switch's id of the leg's network
    Cidr subnet;
    uint32_t gateway = 0;
    MacKey mac = 0;
    uint32_t mtu = 1500;
    LegNat nat = LegNat::kNone;
  };
  struct Route {
    Cidr destination;
    uint32_t via = 0;
  };
  struct Neighbour {
    MacKey mac = 0;
    PortId port = kNoPort;
  };
  static constexpr size_t kBufferCount = 256;
  static constexpr size_t kBufferSize = 128;
  // Rings of buffers for the packets the router generates; a buffer is reused only after the
  // batch that sent it was flushed (a batch holds at most 64 frames).
  template <size_t Size, size_t Count>
  struct Ring {
    std::vector<std::array<uint8_t, Size>> buffers = std::vector<std::array<uint8_t, Size>>(Count);
    size_t next = 0;
    uint8_t* take() {
      uint8_t* b = buffers[next].data();
      next = (next + 1) % Count;
      return b;
    }
  };
  struct Buffers {
    Ring<kBufferSize, kBufferCount> generated;  // ARP, ICMP errors
    Ring<DhcpServer::kReplySize, Datapath::kBatch> dhcp;
    Ring<DnsResponder::kReplySize, Datapath::kBatch> dns;
  };

  const Leg* leg_by_port(PortId port) const;
  const Leg* leg_for(uint32_t ip) const;
  void handle_arp(const Leg& leg, const RxFrame& frame, const ParsedFrame& parsed);
  void handle_local(const Leg& leg, RxFrame frame, const ParsedFrame& parsed);
  // tracked: the packet belongs to a translated connection and was rewritten already.
  void forward(const Leg& in, RxFrame frame, const ParsedFrame& parsed, bool tracked = false);
  // Translates the packet when it belongs to a NAT connection or opens a port forward, and
  // forwards it; false when NAT has nothing to do with it.
  bool translate(const Leg& in, RxFrame frame, const ParsedFrame& parsed);
  // Masquerades a new connection leaving in's network through out; false when it was dropped.
  const Leg* uplink_with_address(uint32_t ip) const;
  bool masquerade(const Leg& in, const Leg& out, RxFrame frame, const ParsedFrame& parsed);
  void send_arp_request(const Leg& leg, uint32_t target);
  void send_arp(const Leg& leg, uint16_t op, MacKey eth_dst, MacKey target_mac, uint32_t target_ip);
  void send_icmp_error(const Leg& leg, const RxFrame& frame, const ParsedFrame& parsed,
                       uint8_t type, uint8_t code);
  void emit(const Leg& leg, uint8_t* data, uint32_t len);

  Datapath& datapath_;
  Firewall* firewall_;
  DhcpServer* dhcp_;
  DnsResponder* dns_;
  std::vector<Leg> legs_;
  std::vector<Route> routes_;
  PortForwards forwards_;
  std::unordered_map<uint32_t, Neighbour> neighbours_;
  PerWorker<Buffers> buffers_;
};

}  // namespace vireo::net
