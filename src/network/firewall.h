#pragma once
// Firewall: stateful filtering of routed traffic. Each network has a default policy per
// direction ("in": entering the network from another one, "out": leaving it) and an ordered
// list of rules (protocol, remote CIDR, destination port range, allow/deny) with hit counters;
// the first matching rule decides, else the policy. A packet of a tracked connection (either
// direction) passes without rules, as do ICMP errors about one (related); a new connection
// must be allowed by the source network's "out" and the destination network's "in". Traffic
// within one network is switched, not filtered. Not thread-safe: the datapath thread owns it.
#include <cstdint>
#include <map>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "network/conntrack.h"
#include "network/ipv4.h"
#include "network/parser.h"

namespace vireo::net {

enum class FwAction : uint8_t { kAllow, kDeny };
enum class FwDirection : uint8_t { kIn, kOut };

struct FwRule {
  uint32_t id = 0;
  FwDirection direction = FwDirection::kIn;
  uint8_t proto = 0;                      // 0: any
  Cidr remote;                            // the other side: source for "in", destination for "out"
  uint16_t port_lo = 0, port_hi = 65535;  // destination port (TCP/UDP)
  FwAction action = FwAction::kAllow;
  uint64_t hits = 0;
};

struct FwPolicy {
  FwAction in = FwAction::kAllow;
  FwAction out = FwAction::kAllow;
};

class Firewall {
 public:
  void set_policy(uint16_t network, const FwPolicy& policy);
  FwPolicy policy(uint16_t network) const;
  uint32_t add_rule(uint16_t network, FwRule rule);
  [[nodiscard]] Result<void> remove_rule(uint16_t network, uint32_t id);
  const std::vector<FwRule>& rules(uint16_t network) const;
  void remove_network(uint16_t network);

  // Whether a routed IPv4 packet from network from to network to may pass; tracks it.
  bool allow(uint16_t from, uint16_t to, const uint8_t* frame, const ParsedFrame& parsed,
             uint64_t now_ns);
  // Whether the rules let a new connection with key start from network from to network to,
  // without tracking it (NAT creates the connection itself, with its translation).
  bool permits(uint16_t from, uint16_t to, const FlowKey& key);
  void tick(uint64_t now_ns) { conntrack_.expire(now_ns); }
  const Conntrack& conntrack() const { return conntrack_; }
  Conntrack& conntrack() { return conntrack_; }

 private:
  struct NetworkRules {
    FwPolicy policy;
    std::vector<FwRule> rules;
  };
  bool filtered(uint16_t network) const;
  FwAction evaluate(uint16_t network, FwDirection direction, const FlowKey& key);
  bool related(const uint8_t* frame, const ParsedFrame& parsed);

  std::map<uint16_t, NetworkRules> networks_;
  Conntrack conntrack_;
  uint32_t next_id_ = 1;
};

FlowKey flow_key(const uint8_t* frame, const ParsedFrame& parsed);
Json to_json(const FwRule& rule);
[[nodiscard]] Result<FwRule> fw_rule_from_json(const Json& j);

}  // namespace vireo::net
