#include "network/firewall.h"

#include <charconv>

#include "network/wire.h"

namespace vireo::net {
namespace {

constexpr uint8_t kIcmpEchoReply = 0, kIcmpUnreachable = 3, kIcmpEcho = 8, kIcmpTimeExceeded = 11;
const std::vector<FwRule> kNoRules;

bool is_icmp_error(uint8_t type) {
  return type == kIcmpUnreachable || type == kIcmpTimeExceeded || type == 12;
}

}  // namespace

FlowKey flow_key(const uint8_t* frame, const ParsedFrame& p) {
  const uint8_t* ip = frame + p.l3;
  FlowKey k{load_be32(ip + 12), load_be32(ip + 16), 0, 0, p.ip_proto};
  if (p.l4_kind == L4::kTcp || p.l4_kind == L4::kUdp) {
    k.sport = p.src_port;
    k.dport = p.dst_port;
  } else if (p.l4_kind == L4::kIcmp) {
    uint8_t type = frame[p.l4];
    // An echo and its reply share the identifier; key both ends with it.
    if (type == kIcmpEcho || type == kIcmpEchoReply)
      k.sport = k.dport = load_be16(frame + p.l4 + 4);
  }
  return k;
}

void Firewall::set_policy(uint16_t network, const FwPolicy& policy) {
  networks_[network].policy = policy;
}

FwPolicy Firewall::policy(uint16_t network) const {
  auto it = networks_.find(network);
  return it == networks_.end() ? FwPolicy{} : it->second.policy;
}

uint32_t Firewall::add_rule(uint16_t network, FwRule rule) {
  rule.id = next_id_++;
  rule.hits = 0;
  networks_[network].rules.push_back(rule);
  return rule.id;
}

Result<void> Firewall::remove_rule(uint16_t network, uint32_t id) {
  auto it = networks_.find(network);
  if (it == networks_.end() ||
      !std::erase_if(it->second.rules, [&](const FwRule& r) { return r.id == id; }))
    return make_error(ErrorCode::kNotFound, "no rule {}", id);
  return {};
}

const std::vector<FwRule>& Firewall::rules(uint16_t network) const {
  auto it = networks_.find(network);
  return it == networks_.end() ? kNoRules : it->second.rules;
}

void Firewall::remove_network(uint16_t network) {
  networks_.erase(network);
}

bool Firewall::filtered(uint16_t network) const {
  auto it = networks_.find(network);
  if (it == networks_.end()) return false;
  const NetworkRules& n = it->second;
  return !n.rules.empty() || n.policy.in == FwAction::kDeny || n.policy.out == FwAction::kDeny;
}

FwAction Firewall::evaluate(uint16_t network, FwDirection direction, const FlowKey& key) {
  auto it = networks_.find(network);
  if (it == networks_.end()) return FwAction::kAllow;
  uint32_t remote = direction == FwDirection::kIn ? key.src : key.dst;
  bool has_ports = key.proto == kIpProtoTcp || key.proto == kIpProtoUdp;
  for (FwRule& r : it->second.rules) {
    if (r.direction != direction || (r.proto && r.proto != key.proto) || !r.remote.contains(remote))
      continue;
    bool all_ports = r.port_lo == 0 && r.port_hi == 65535;
    if (!all_ports && (!has_ports || key.dport < r.port_lo || key.dport > r.port_hi)) continue;
    ++r.hits;
    return r.action;
  }
  return direction == FwDirection::kIn ? it->second.policy.in : it->second.policy.out;
}

// An ICMP error quotes the packet it is about; it belongs to that packet's connection.
bool Firewall::related(const uint8_t* frame, const ParsedFrame& p) {
  if (p.l4_kind != L4::kIcmp || p.payload_len < 28 || !is_icmp_error(frame[p.l4])) return false;
  const uint8_t* inner = frame + p.payload;
  uint32_t header = uint32_t{inner[0] & 0x0fu} * 4;
  if (header < 20 || p.payload_len < header + 8) return false;
  FlowKey k{load_be32(inner + 12), load_be32(inner + 16), 0, 0, inner[9]};
  if (k.proto == kIpProtoTcp || k.proto == kIpProtoUdp) {
    k.sport = load_be16(inner + header);
    k.dport = load_be16(inner + header + 2);
  } else if (k.proto == kIpProtoIcmp && inner[header] == kIcmpEcho) {
    k.sport = k.dport = load_be16(inner + header + 4);
  }
  return conntrack_.find(k).flow != nullptr;
}

bool Firewall::allow(uint16_t from, uint16_t to, const uint8_t* frame, const ParsedFrame& p,
                     uint64_t now_ns) {
  if (!filtered(from) && !filtered(to)) return true;
  FlowKey key = flow_key(frame, p);
  if (TrackResult t = conntrack_.find(key); t.flow) {
    conntrack_.update(*t.flow, t.direction, p.tcp_flags, now_ns);
    return true;
  }
  if (related(frame, p)) return true;
  if (evaluate(from, FwDirection::kOut, key) == FwAction::kDeny) return false;
  if (evaluate(to, FwDirection::kIn, key) == FwAction::kDeny) return false;
  if (Flow* f = conntrack_.create(key, now_ns))
    conntrack_.update(*f, Direction::kOriginal, p.tcp_flags, now_ns);
  return true;
}

bool Firewall::permits(uint16_t from, uint16_t to, const FlowKey& key) {
  if (!filtered(from) && !filtered(to)) return true;
  return evaluate(from, FwDirection::kOut, key) == FwAction::kAllow &&
         evaluate(to, FwDirection::kIn, key) == FwAction::kAllow;
}

Json to_json(const FwRule& r) {
  const char* proto = r.proto == kIpProtoTcp    ? "tcp"
                      : r.proto == kIpProtoUdp  ? "udp"
                      : r.proto == kIpProtoIcmp ? "icmp"
                                                : "any";
  Json j{{"id", r.id},
         {"direction", r.direction == FwDirection::kIn ? "in" : "out"},
         {"protocol", proto},
         {"cidr", format_cidr(r.remote)},
         {"action", r.action == FwAction::kAllow ? "allow" : "deny"},
         {"hits", r.hits}};
  if (r.port_lo != 0 || r.port_hi != 65535)
    j["port"] = r.port_lo == r.port_hi ? fmt::format("{}", r.port_lo)
                                       : fmt::format("{}-{}", r.port_lo, r.port_hi);
  return j;
}

namespace {

Result<uint16_t> parse_port(std::string_view s) {
  unsigned v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || v == 0 || v > 65535)
    return make_error(ErrorCode::kInvalidArgument, "invalid port '{}'", s);
  return static_cast<uint16_t>(v);
}

Result<std::string> field(const Json& j, const char* key, const char* fallback) {
  auto it = j.find(key);
  if (it == j.end()) return std::string(fallback);
  if (!it->is_string())
    return make_error(ErrorCode::kInvalidArgument, "'{}' must be a string", key);
  return it->get<std::string>();
}

}  // namespace

Result<FwRule> fw_rule_from_json(const Json& j) {
  FwRule r;
  std::string direction = TRY(field(j, "direction", "in"));
  if (direction != "in" && direction != "out")
    return make_error(ErrorCode::kInvalidArgument, "direction must be in or out");
  r.direction = direction == "in" ? FwDirection::kIn : FwDirection::kOut;
  std::string proto = TRY(field(j, "protocol", "any"));
  if (proto == "tcp")
    r.proto = kIpProtoTcp;
  else if (proto == "udp")
    r.proto = kIpProtoUdp;
  else if (proto == "icmp")
    r.proto = kIpProtoIcmp;
  else if (proto != "any")
    return make_error(ErrorCode::kInvalidArgument, "unknown protocol '{}'", proto);
  r.remote = TRY(parse_cidr(TRY(field(j, "cidr", "0.0.0.0/0"))));
  std::string port = TRY(field(j, "port", ""));
  if (!port.empty()) {
    if (r.proto != kIpProtoTcp && r.proto != kIpProtoUdp)
      return make_error(ErrorCode::kInvalidArgument, "a port needs protocol tcp or udp");
    size_t dash = port.find('-');
    r.port_lo = TRY(parse_port(port.substr(0, dash)));
    r.port_hi = dash == std::string::npos ? r.port_lo : TRY(parse_port(port.substr(dash + 1)));
    if (r.port_hi < r.port_lo) return make_error(ErrorCode::kInvalidArgument, "empty port range");
  }
  std::string action = TRY(field(j, "action", ""));
  if (action != "allow" && action != "deny")
    return make_error(ErrorCode::kInvalidArgument, "action must be allow or deny");
  r.action = action == "allow" ? FwAction::kAllow : FwAction::kDeny;
  return r;
}

}  // namespace vireo::net
