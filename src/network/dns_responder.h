#pragma once
// DnsResponder: the DNS server of each routed network, on its gateway address (UDP 53). It
// answers A queries for the instance names of that network — names registered over the
// control socket, static DHCP reservations with a name, and host names DHCP clients sent
// (option 12) — as "NAME" or "NAME.NETWORK"; other names get NXDOMAIN, other query types of
// a known name an empty answer. No recursion, no forwarding. Malformed queries are dropped and
// counted by the caller. Builds replies into the caller's buffer; allocates only when a name is
// registered. Not thread-safe: runs on the datapath thread.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "network/dhcp_server.h"
#include "network/drop_reason.h"
#include "network/parser.h"

namespace vireo::net {

struct DnsName {
  std::string name;
  uint32_t ip = 0;
};

class DnsResponder {
 public:
  static constexpr uint32_t kReplySize = 14 + 20 + 8 + 512;
  static constexpr uint32_t kTtl = 60;

  // dhcp (may be null, outlives this) supplies names from leases and reservations.
  explicit DnsResponder(const DhcpServer* dhcp) : dhcp_(dhcp) {}

  // Serves network (the switch's id) whose name is also its domain.
  void enable(uint16_t network, const std::string& domain);
  void disable(uint16_t network);
  [[nodiscard]] Result<void> add(uint16_t network, const std::string& name, uint32_t ip);
  [[nodiscard]] Result<void> remove(uint16_t network, const std::string& name);
  // Names registered over the control socket (persisted by the owner).
  std::vector<DnsName> registered(uint16_t network) const;
  // Every name the network resolves, with where it comes from.
  Json names_json(uint16_t network) const;
  // The address of name (lower case) in network, 0 when unknown.
  uint32_t lookup(uint16_t network, std::string_view name) const;

  // Answers the DNS query in frame (a UDP datagram to port 53 of gateway); writes the reply
  // frame to out (kReplySize bytes) and returns its length, or 0 with drop set when the query
  // is malformed (kNone: nothing to answer).
  uint32_t handle(uint16_t network, MacKey leg_mac, const uint8_t* frame, const ParsedFrame& parsed,
                  uint8_t* out, DropReason& drop) const;

 private:
  struct Zone {
    std::string domain;
    std::map<std::string, uint32_t> names;
  };
  std::map<uint16_t, Zone> zones_;
  const DhcpServer* dhcp_;
};

// Whether name is a valid instance name (a DNS label: letters, digits, hyphens, 1-63).
bool valid_dns_label(std::string_view name);

}  // namespace vireo::net
