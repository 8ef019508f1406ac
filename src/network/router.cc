#include "network/router.h"

#include <time.h>

#include <algorithm>
#include <cstring>

#include "network/wire.h"

namespace vireo::net {
namespace {

constexpr uint8_t kIcmpEchoReply = 0;
constexpr uint8_t kIcmpUnreachable = 3;
constexpr uint8_t kIcmpEchoRequest = 8;
constexpr uint8_t kIcmpTimeExceeded = 11;
constexpr uint8_t kDefaultTtl = 64;

void put_mac(uint8_t* p, MacKey mac) {
  for (int i = 0; i < 6; ++i) p[i] = static_cast<uint8_t>(mac >> (40 - 8 * i));
}

// Moves the MAC addresses over the 802.1Q tag so the frame leaves the router untagged.
RxFrame strip_tag(RxFrame frame, const ParsedFrame& parsed) {
  if (!parsed.tagged) return frame;
  std::memmove(frame.data + 4, frame.data, 12);
  frame.data += 4;
  frame.len -= 4;
  if (frame.vnet.flags & kVnetNeedsCsum) frame.vnet.csum_start -= 4;
  if (frame.vnet.gso_type != kVnetGsoNone) frame.vnet.hdr_len -= 4;
  return frame;
}

}  // namespace

Router::Router(Datapath& datapath, Firewall* firewall, DhcpServer* dhcp, DnsResponder* dns)
    : datapath_(datapath), firewall_(firewall), dhcp_(dhcp), dns_(dns) {
  neighbours_.reserve(4096);
}

MacKey Router::leg_mac(uint32_t gateway) {
  return uint64_t{0x0276} << 32 | gateway;
}

uint64_t Router::now_ns() const {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

void Router::add_leg(PortId port, const Cidr& subnet, uint32_t gateway, uint32_t mtu, LegNat nat) {
  uint16_t network = datapath_.sw().config(port).access_vlan;
  Leg leg{port, network, subnet, gateway, leg_mac(gateway), mtu, nat};
  legs_.push_back(leg);
  // Frames to the router's MAC must reach only the router, never a flood: it edits them in place.
  datapath_.sw().fdb().add_static(network, leg.mac, port);
}

void Router::remove_leg(PortId port) {
  std::erase_if(legs_, [&](const Leg& l) { return l.port == port; });
  std::erase_if(neighbours_, [&](const auto& kv) { return kv.second.port == port; });
}

Result<void> Router::add_route(const Cidr& destination, uint32_t via) {
  if (!leg_for(via))
    return make_error(ErrorCode::kInvalidArgument, "next hop {} is not in a routed network",
                      format_ipv4(via));
  for (const Route& r : routes_)
    if (r.destination.addr == destination.addr && r.destination.prefix == destination.prefix)
      return make_error(ErrorCode::kAlreadyExists, "route to {} exists", format_cidr(destination));
  routes_.push_back(Route{destination, via});
  return {};
}

Result<void> Router::remove_route(const Cidr& destination) {
  size_t removed = std::erase_if(routes_, [&](const Route& r) {
    return r.destination.addr == destination.addr && r.destination.prefix == destination.prefix;
  });
  if (!removed) return make_error(ErrorCode::kNotFound, "no route to {}", format_cidr(destination));
  return {};
}

Json Router::routes_json() const {
  Json list = Json::array();
  for (const Route& r : routes_)
    list.push_back(Json{{"destination", format_cidr(r.destination)}, {"via", format_ipv4(r.via)}});
  return list;
}

void Router::tick(uint64_t) {}

const Router::Leg* Router::leg_by_port(PortId port) const {
  for (const Leg& l : legs_)
    if (l.port == port) return &l;
  return nullptr;
}

const Router::Leg* Router::leg_for(uint32_t ip) const {
  for (const Leg& l : legs_)
    if (l.subnet.contains(ip)) return &l;
  return nullptr;
}

void Router::emit(const Leg& leg, uint8_t* data, uint32_t len) {
  RxFrame f;
  f.data = data;
  f.len = len;
  datapath_.inject(leg.port, f, now_ns());
}

void Router::handle(PortId port, const RxFrame& frame, const ParsedFrame& parsed, uint16_t) {
  const Leg* leg = leg_by_port(port);
  if (!leg) return;
  if (parsed.is_arp()) return handle_arp(*leg, frame, parsed);
  if (parsed.app == App::kDhcp && dhcp_) {
    uint8_t* out = buffers_.mine().dhcp.take();
    uint32_t n = dhcp_->handle(leg->network, leg->mac, frame.data, parsed, now_ns(), out);
    if (n) emit(*leg, out, n);
    return;
  }
  // Only frames unicast to this leg are ours to edit; floods are looked at, never changed.
  if (!parsed.is_ipv4() || mac_key(frame.data) != leg->mac) return;
  RxFrame f = strip_tag(frame, parsed);
  ParsedFrame p;
  if (parse_frame(f.data, f.len, p) != DropReason::kNone) return;
  if (translate(*leg, f, p)) return;
  for (const Leg& l : legs_)
    if (load_be32(f.data + p.l3 + 16) == l.gateway) return handle_local(*leg, f, p);
  forward(*leg, f, p);
}

void Router::handle_arp(const Leg& leg, const RxFrame& frame, const ParsedFrame& parsed) {
  const uint8_t* arp = frame.data + parsed.l3;
  uint16_t op = load_be16(arp + 6);
  MacKey sender_mac = mac_key(arp + 8);
  uint32_t sender_ip = load_be32(arp + 14);
  uint32_t target_ip = load_be32(arp + 24);
  if (leg.subnet.contains(sender_ip) && sender_ip != leg.gateway && !is_multicast(sender_mac))
    neighbours_[sender_ip] = Neighbour{sender_mac, leg.port};
  if (op != 1 || target_ip != leg.gateway) return;
  send_arp(leg, 2, sender_mac, sender_mac, sender_ip);
}

// ICMP echo to a gateway address: turned into the reply in place.
void Router::handle_local(const Leg& leg, RxFrame f, const ParsedFrame& p) {
  if (p.l4_kind == L4::kUdp && p.dst_port == 53 && dns_) {
    uint8_t* out = buffers_.mine().dns.take();
    DropReason drop = DropReason::kNone;
    uint32_t n = dns_->handle(leg.network, leg.mac, f.data, p, out, drop);
    if (drop != DropReason::kNone) datapath_.count_drop(drop);
    if (n) emit(leg, out, n);
    return;
  }
  if (p.l4_kind != L4::kIcmp || p.fragment) return;
  uint8_t* ip = f.data + p.l3;
  uint8_t* icmp = f.data + p.l4;
  if (icmp[0] != kIcmpEchoRequest) return;
  uint8_t mac_tmp[6];
  std::memcpy(mac_tmp, f.data, 6);
  std::memcpy(f.data, f.data + 6, 6);
  std::memcpy(f.data + 6, mac_tmp, 6);
  uint8_t ip_tmp[4];
  std::memcpy(ip_tmp, ip + 12, 4);
  std::memcpy(ip + 12, ip + 16, 4);
  std::memcpy(ip + 16, ip_tmp, 4);
  uint16_t old_ttl_word = load_be16(ip + 8);
  ip[8] = kDefaultTtl;
  checksum_replace16(ip + 10, old_ttl_word, load_be16(ip + 8));
  uint16_t old_type_word = load_be16(icmp);
  icmp[0] = kIcmpEchoReply;
  checksum_replace16(icmp + 2, old_type_word, load_be16(icmp));
  f.vnet = VnetHdr{};
  datapath_.inject(leg.port, f, now_ns());
}

bool Router::translate(const Leg& in, RxFrame f, const ParsedFrame& p) {
  if (!firewall_) return false;
  Conntrack& ct = firewall_->conntrack();
  // An ICMP error about a translated packet goes to the untranslated sender.
  FlowKey quoted, untranslated;
  if (icmp_error_quote(f.data, p, quoted)) {
    if (!ct.find_quoted(quoted, untranslated)) return false;
    nat_rewrite_icmp_error(f.data, p, quoted, untranslated);
    forward(in, f, p, true);
    return true;
  }
  if (!nat_supported(f.data, p)) return false;
  FlowKey key = flow_key(f.data, p);
  bool partial = f.vnet.flags & kVnetNeedsCsum;
  uint64_t now = now_ns();
  if (TrackResult t = ct.find(key); t.flow) {
    if (!t.flow->nat) return false;
    // An echo request towards the NAT address is not a reply, whatever its identifier.
    bool reply = t.direction == Direction::kReply;
    if (p.l4_kind == L4::kIcmp && f.data[p.l4] != (reply ? kIcmpEchoReply : kIcmpEchoRequest))
      return false;
    FlowKey to = t.direction == Direction::kOriginal ? t.flow->translated : t.flow->key.reversed();
    nat_rewrite(f.data, p, to, partial);
    ct.update(*t.flow, t.direction, p.tcp_flags, now);
    forward(in, f, p, true);
    return true;
  }
  // A port forward of the uplink address: from outside (DNAT), or from an instance inside
  // (hairpin: DNAT and SNAT to this leg's gateway, so the target answers through the router).
  const Leg* uplink = in.nat == LegNat::kUplink ? &in : uplink_with_address(key.dst);
  if (!uplink || key.dst != uplink->gateway || p.l4_kind == L4::kIcmp) return false;
  const PortForward* pf = forwards_.find(p.ip_proto, p.dst_port);
  if (!pf) return false;
  const Leg* out = leg_for(pf->ip);
  if (!out || !firewall_->permits(in.network, out->network, key)) {
    datapath_.count_drop(out ? DropReason::kFirewallDenied : DropReason::kNoRoute);
    return true;
  }
  FlowKey to{key.src, pf->ip, key.sport, pf->port, key.proto};
  Flow* flow =
      uplink == &in ? ct.create_nat(key, to, now) : ct.create_snat(key, to, in.gateway, now);
  if (!flow) {
    datapath_.count_drop(DropReason::kNatExhausted);
    return true;
  }
  to = flow->translated;
  nat_rewrite(f.data, p, to, partial);
  ct.update(*flow, Direction::kOriginal, p.tcp_flags, now);
  forward(in, f, p, true);
  return true;
}

const Router::Leg* Router::uplink_with_address(uint32_t ip) const {
  for (const Leg& l : legs_)
    if (l.nat == LegNat::kUplink && l.gateway == ip) return &l;
  return nullptr;
}

bool Router::masquerade(const Leg& in, const Leg& out, RxFrame f, const ParsedFrame& p) {
  if (!nat_supported(f.data, p)) {
    datapath_.count_drop(DropReason::kNatUnsupported);
    return false;
  }
  FlowKey key = flow_key(f.data, p);
  if (!firewall_->permits(in.network, out.network, key)) {
    datapath_.count_drop(DropReason::kFirewallDenied);
    return false;
  }
  Conntrack& ct = firewall_->conntrack();
  Flow* flow = ct.create_snat(key, out.gateway, now_ns());
  if (!flow) {
    datapath_.count_drop(DropReason::kNatExhausted);
    return false;
  }
  nat_rewrite(f.data, p, flow->translated, f.vnet.flags & kVnetNeedsCsum);
  ct.update(*flow, Direction::kOriginal, p.tcp_flags, now_ns());
  return true;
}

void Router::forward(const Leg& in, RxFrame f, const ParsedFrame& p, bool tracked) {
  uint8_t* ip = f.data + p.l3;
  uint32_t dst = load_be32(ip + 16);
  uint32_t next_hop = dst;
  const Leg* out = leg_for(dst);
  if (!out) {
    const Route* best = nullptr;
    for (const Route& r : routes_)
      if (r.destination.contains(dst) && (!best || r.destination.prefix > best->destination.prefix))
        best = &r;
    if (best) {
      next_hop = best->via;
      out = leg_for(next_hop);
    }
  }
  if (!out) {
    datapath_.count_drop(DropReason::kNoRoute);
    return send_icmp_error(in, f, p, kIcmpUnreachable, 0);
  }
  bool snat = !tracked && firewall_ && in.nat == LegNat::kMasquerade && out->nat == LegNat::kUplink;
  if (!tracked && !snat && firewall_ &&
      !firewall_->allow(in.network, out->network, f.data, p, now_ns())) {
    datapath_.count_drop(DropReason::kFirewallDenied);
    return;
  }
  if (ip[8] <= 1) {
    datapath_.count_drop(DropReason::kTtlExceeded);
    return send_icmp_error(in, f, p, kIcmpTimeExceeded, 0);
  }
  if (snat && !masquerade(in, *out, f, p)) return;
  auto neighbour = neighbours_.find(next_hop);
  if (neighbour == neighbours_.end()) {
    // The packet is dropped; the sender's retransmission finds the neighbour resolved.
    datapath_.count_drop(DropReason::kNoRoute);
    return send_arp_request(*out, next_hop);
  }
  uint16_t old_word = load_be16(ip + 8);
  --ip[8];
  checksum_replace16(ip + 10, old_word, load_be16(ip + 8));
  put_mac(f.data, neighbour->second.mac);
  put_mac(f.data + 6, out->mac);
  datapath_.inject(out->port, f, now_ns());
}

void Router::send_arp_request(const Leg& leg, uint32_t target) {
  send_arp(leg, 1, 0xffffffffffffull, 0, target);
}

// An ARP packet (op 1 request, 2 reply) from the leg's gateway address.
void Router::send_arp(const Leg& leg, uint16_t op, MacKey eth_dst, MacKey target_mac,
                      uint32_t target_ip) {
  uint8_t* b = buffers_.mine().generated.take();
  put_mac(b, eth_dst);
  put_mac(b + 6, leg.mac);
  store_be16(b + 12, kEtherTypeArp);
  uint8_t* r = b + kEthHeaderLen;
  store_be16(r, 1);
  store_be16(r + 2, kEtherTypeIpv4);
  r[4] = 6;
  r[5] = 4;
  store_be16(r + 6, op);
  put_mac(r + 8, leg.mac);
  store_be32(r + 14, leg.gateway);
  put_mac(r + 18, target_mac);
  store_be32(r + 24, target_ip);
  emit(leg, b, kEthHeaderLen + 28);
}

// RFC 792 error: the offending IP header and the first 8 bytes of its payload, sent back to
// the source from the gateway of the leg it came in on. Never about an ICMP error itself.
void Router::send_icmp_error(const Leg& leg, const RxFrame& f, const ParsedFrame& p, uint8_t type,
                             uint8_t code) {
  const uint8_t* ip = f.data + p.l3;
  if (p.l4_kind == L4::kIcmp && f.data[p.l4] != kIcmpEchoRequest) return;
  uint32_t quoted = std::min<uint32_t>(p.l4 - p.l3 + 8, p.ip_len);
  uint8_t* b = buffers_.mine().generated.take();
  if (kEthHeaderLen + 20 + 8 + quoted > kBufferSize) return;
  std::memcpy(b, f.data + 6, 6);
  put_mac(b + 6, leg.mac);
  store_be16(b + 12, kEtherTypeIpv4);
  uint8_t* oip = b + kEthHeaderLen;
  uint16_t total = static_cast<uint16_t>(20 + 8 + quoted);
  const uint8_t header[12] = {0x45, 0, uint8_t(total >> 8), uint8_t(total), 0, 0,
                              0x40, 0, kDefaultTtl,         kIpProtoIcmp,   0, 0};
  std::memcpy(oip, header, sizeof(header));
  store_be32(oip + 12, leg.gateway);
  std::memcpy(oip + 16, ip + 12, 4);
  store_be16(oip + 10, checksum(oip, 20));
  uint8_t* icmp = oip + 20;
  icmp[0] = type;
  icmp[1] = code;
  store_be16(icmp + 2, 0);
  store_be32(icmp + 4, 0);
  std::memcpy(icmp + 8, ip, quoted);
  store_be16(icmp + 2, checksum(icmp, 8 + quoted));
  emit(leg, b, kEthHeaderLen + total);
}

}  // namespace vireo::net
