#include "network/nat.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "network/ipv4.h"
#include "network/wire.h"

namespace vireo::net {
namespace {

constexpr uint8_t kIcmpEchoReply = 0, kIcmpEcho = 8;

// A checksum field of a NEEDS_CSUM frame holds the pseudo-header sum, not inverted: add the
// new word and take away the old one.
void partial_replace16(uint8_t* field, uint16_t old_word, uint16_t new_word) {
  uint32_t sum = uint32_t{load_be16(field)} + static_cast<uint16_t>(~old_word) + new_word;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  store_be16(field, static_cast<uint16_t>(sum));
}

struct L4Checksum {
  uint8_t* field = nullptr;  // null: none to fix (UDP without checksum)
  bool pseudo = false;       // covers the addresses
  bool udp = false;
};

L4Checksum l4_checksum(uint8_t* frame, const ParsedFrame& p) {
  uint8_t* l4 = frame + p.l4;
  switch (p.l4_kind) {
    case L4::kTcp:
      return {l4 + 16, true, false};
    case L4::kUdp:
      return {load_be16(l4 + 6) ? l4 + 6 : nullptr, true, true};
    case L4::kIcmp:
      return {l4 + 2, false, false};
    default:
      return {};
  }
}

void replace16(const L4Checksum& c, bool in_pseudo, bool partial, uint16_t old_word,
               uint16_t new_word) {
  if (!c.field || old_word == new_word) return;
  if (partial) {
    // The receiver sums the L4 header itself; only the pseudo-header part is ours to fix.
    if (in_pseudo) partial_replace16(c.field, old_word, new_word);
    return;
  }
  if (in_pseudo && !c.pseudo) return;
  checksum_replace16(c.field, old_word, new_word);
  // In UDP a computed 0 is sent as 0xffff; 0 means "no checksum".
  if (c.udp && load_be16(c.field) == 0) store_be16(c.field, 0xffff);
}

void replace_address(uint8_t* ip, uint32_t offset, uint32_t to, const L4Checksum& c, bool partial) {
  uint32_t old = load_be32(ip + offset);
  if (old == to) return;
  store_be32(ip + offset, to);
  checksum_replace32(ip + 10, old, to);
  for (int half : {16, 0})
    replace16(c, true, partial, static_cast<uint16_t>(old >> half),
              static_cast<uint16_t>(to >> half));
}

void replace_port(uint8_t* at, uint16_t to, const L4Checksum& c, bool partial) {
  uint16_t old = load_be16(at);
  if (old == to) return;
  store_be16(at, to);
  replace16(c, false, partial, old, to);
}

Result<uint16_t> parse_port(std::string_view s) {
  unsigned v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || v == 0 || v > 65535)
    return make_error(ErrorCode::kInvalidArgument, "invalid port '{}'", s);
  return static_cast<uint16_t>(v);
}

const char* proto_name(uint8_t proto) {
  return proto == kIpProtoUdp ? "udp" : "tcp";
}

}  // namespace

bool nat_supported(const uint8_t* frame, const ParsedFrame& p) {
  if (p.later_fragment) return false;
  if (p.l4_kind == L4::kTcp || p.l4_kind == L4::kUdp) return true;
  if (p.l4_kind != L4::kIcmp) return false;
  uint8_t type = frame[p.l4];
  return type == kIcmpEcho || type == kIcmpEchoReply;
}

void nat_rewrite(uint8_t* frame, const ParsedFrame& p, const FlowKey& to, bool partial_csum) {
  uint8_t* ip = frame + p.l3;
  uint8_t* l4 = frame + p.l4;
  L4Checksum c = p.later_fragment ? L4Checksum{} : l4_checksum(frame, p);
  bool partial = partial_csum && p.l4_kind != L4::kIcmp;
  replace_address(ip, 12, to.src, c, partial);
  replace_address(ip, 16, to.dst, c, partial);
  if (p.later_fragment) return;
  if (p.l4_kind == L4::kTcp || p.l4_kind == L4::kUdp) {
    replace_port(l4, to.sport, c, partial);
    replace_port(l4 + 2, to.dport, c, partial);
  } else if (p.l4_kind == L4::kIcmp) {
    replace_port(l4 + 4, to.sport, c, false);
  }
}

bool icmp_error_quote(const uint8_t* frame, const ParsedFrame& p, FlowKey& q) {
  if (p.l4_kind != L4::kIcmp || p.fragment || p.payload_len < 28) return false;
  uint8_t type = frame[p.l4];
  if (type != 3 && type != 11 && type != 12) return false;
  const uint8_t* inner = frame + p.payload;
  uint32_t header = uint32_t{inner[0] & 0x0fu} * 4;
  if (inner[0] >> 4 != 4 || header < 20 || p.payload_len < header + 8) return false;
  q = FlowKey{load_be32(inner + 12), load_be32(inner + 16), 0, 0, inner[9]};
  if (q.proto == kIpProtoTcp || q.proto == kIpProtoUdp) {
    q.sport = load_be16(inner + header);
    q.dport = load_be16(inner + header + 2);
    return true;
  }
  if (q.proto == kIpProtoIcmp && (inner[header] == kIcmpEcho || inner[header] == kIcmpEchoReply)) {
    q.sport = q.dport = load_be16(inner + header + 4);
    return true;
  }
  return false;
}

void nat_rewrite_icmp_error(uint8_t* frame, const ParsedFrame& p, const FlowKey& q,
                            const FlowKey& to) {
  uint8_t* ip = frame + p.l3;
  uint8_t* icmp_sum = frame + p.l4 + 2;
  uint8_t* inner = frame + p.payload;
  uint32_t header = uint32_t{inner[0] & 0x0fu} * 4;
  // Every 16-bit word of the quoted packet is covered by the ICMP checksum (it starts at an
  // even offset of the ICMP message): change it and the checksum together.
  auto set16 = [&](uint8_t* at, uint16_t v) {
    uint16_t old = load_be16(at);
    if (old == v) return;
    store_be16(at, v);
    checksum_replace16(icmp_sum, old, v);
  };
  auto set32 = [&](uint8_t* at, uint32_t v, uint8_t* ip_sum) {
    uint32_t old = load_be32(at);
    if (old == v) return;
    set16(at, static_cast<uint16_t>(v >> 16));
    set16(at + 2, static_cast<uint16_t>(v));
    // The quoted header's own checksum changes too, and with it the ICMP checksum.
    uint8_t sum[2];
    std::memcpy(sum, ip_sum, 2);
    checksum_replace32(sum, old, v);
    set16(ip_sum, load_be16(sum));
  };
  set32(inner + 12, to.src, inner + 10);
  set32(inner + 16, to.dst, inner + 10);
  if (q.proto == kIpProtoIcmp) {
    set16(inner + header + 4, to.sport);
  } else {
    set16(inner + header, to.sport);
    set16(inner + header + 2, to.dport);
  }
  // The outer header is not covered by the ICMP checksum.
  L4Checksum none{};
  if (load_be32(ip + 12) == q.dst) replace_address(ip, 12, to.dst, none, false);
  replace_address(ip, 16, to.src, none, false);
}

Result<void> PortForwards::add(const PortForward& f) {
  if (find(f.proto, f.host_port))
    return make_error(ErrorCode::kAlreadyExists, "{} port {} is already forwarded",
                      proto_name(f.proto), f.host_port);
  forwards_.push_back(f);
  return {};
}

Result<void> PortForwards::remove(uint8_t proto, uint16_t host_port) {
  if (!std::erase_if(forwards_, [&](const PortForward& f) {
        return f.proto == proto && f.host_port == host_port;
      }))
    return make_error(ErrorCode::kNotFound, "{} port {} is not forwarded", proto_name(proto),
                      host_port);
  return {};
}

void PortForwards::remove_network(const std::string& network) {
  std::erase_if(forwards_, [&](const PortForward& f) { return f.network == network; });
}

const PortForward* PortForwards::find(uint8_t proto, uint16_t host_port) const {
  for (const PortForward& f : forwards_)
    if (f.proto == proto && f.host_port == host_port) return &f;
  return nullptr;
}

Json to_json(const PortForward& f) {
  return Json{{"network", f.network},
              {"protocol", proto_name(f.proto)},
              {"host_port", f.host_port},
              {"to", fmt::format("{}:{}", format_ipv4(f.ip), f.port)}};
}

Result<PortForward> port_forward_from_json(const Json& j) {
  PortForward f;
  f.network = TRY(get_string(j, "network"));
  std::string proto = TRY(get_string(j, "protocol", false));
  if (proto.empty() || proto == "tcp")
    f.proto = kIpProtoTcp;
  else if (proto == "udp")
    f.proto = kIpProtoUdp;
  else
    return make_error(ErrorCode::kInvalidArgument, "protocol must be tcp or udp, not '{}'", proto);
  auto hp = j.find("host_port");
  if (hp == j.end()) return make_error(ErrorCode::kInvalidArgument, "missing field 'host_port'");
  if (hp->is_number_unsigned() && hp->get<uint64_t>() >= 1 && hp->get<uint64_t>() <= 65535)
    f.host_port = static_cast<uint16_t>(hp->get<uint64_t>());
  else if (hp->is_string())
    f.host_port = TRY(parse_port(hp->get<std::string>()));
  else
    return make_error(ErrorCode::kInvalidArgument, "'host_port' must be a port from 1 to 65535");
  std::string to = TRY(get_string(j, "to"));
  size_t colon = to.rfind(':');
  if (colon == std::string::npos)
    return make_error(ErrorCode::kInvalidArgument, "'to' must be IP:PORT, not '{}'", to);
  f.ip = TRY(parse_ipv4(to.substr(0, colon)));
  f.port = TRY(parse_port(std::string_view(to).substr(colon + 1)));
  return f;
}

}  // namespace vireo::net
