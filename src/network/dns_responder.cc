#include "network/dns_responder.h"

#include <algorithm>
#include <cstring>

#include "network/dns_message.h"
#include "network/ipv4.h"
#include "network/wire.h"

namespace vireo::net {
namespace {

constexpr uint16_t kRcodeNxDomain = 3;

void put_mac(uint8_t* p, MacKey mac) {
  for (int i = 0; i < 6; ++i) p[i] = static_cast<uint8_t>(mac >> (40 - 8 * i));
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Writes name as DNS labels; returns the bytes written.
uint32_t put_name(uint8_t* p, std::string_view name) {
  uint32_t n = 0;
  while (!name.empty()) {
    size_t dot = name.find('.');
    std::string_view label = name.substr(0, dot);
    p[n++] = static_cast<uint8_t>(label.size());
    std::memcpy(p + n, label.data(), label.size());
    n += static_cast<uint32_t>(label.size());
    name = dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
  }
  p[n++] = 0;
  return n;
}

}  // namespace

bool valid_dns_label(std::string_view name) {
  if (name.empty() || name.size() > 63 || name.front() == '-' || name.back() == '-') return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
  });
}

void DnsResponder::enable(uint16_t network, const std::string& domain) {
  zones_[network].domain = lower(domain);
}

void DnsResponder::disable(uint16_t network) {
  zones_.erase(network);
}

Result<void> DnsResponder::add(uint16_t network, const std::string& name, uint32_t ip) {
  auto it = zones_.find(network);
  if (it == zones_.end())
    return make_error(ErrorCode::kConflict, "the network has no gateway to answer DNS on");
  if (!valid_dns_label(name))
    return make_error(ErrorCode::kInvalidArgument,
                      "invalid name '{}': letters, digits and hyphens, at most 63", name);
  it->second.names[lower(name)] = ip;
  return {};
}

Result<void> DnsResponder::remove(uint16_t network, const std::string& name) {
  auto it = zones_.find(network);
  if (it == zones_.end() || !it->second.names.erase(lower(name)))
    return make_error(ErrorCode::kNotFound, "no name '{}'", name);
  return {};
}

std::vector<DnsName> DnsResponder::registered(uint16_t network) const {
  std::vector<DnsName> out;
  if (auto it = zones_.find(network); it != zones_.end())
    for (const auto& [name, ip] : it->second.names) out.push_back(DnsName{name, ip});
  return out;
}

Json DnsResponder::names_json(uint16_t network) const {
  Json list = Json::array();
  for (const DnsName& n : registered(network))
    list.push_back(Json{{"name", n.name}, {"ip", format_ipv4(n.ip)}, {"source", "registered"}});
  if (dhcp_)
    for (const auto& [name, ip] : dhcp_->hostnames(network))
      list.push_back(Json{{"name", name}, {"ip", format_ipv4(ip)}, {"source", "dhcp"}});
  return list;
}

uint32_t DnsResponder::lookup(uint16_t network, std::string_view name) const {
  auto it = zones_.find(network);
  if (it == zones_.end()) return 0;
  const Zone& z = it->second;
  // "web.lan" in network lan is "web".
  if (name.size() > z.domain.size() + 1 && name.ends_with(z.domain) &&
      name[name.size() - z.domain.size() - 1] == '.')
    name.remove_suffix(z.domain.size() + 1);
  if (auto n = z.names.find(std::string(name)); n != z.names.end()) return n->second;
  return dhcp_ ? dhcp_->lookup_hostname(network, name) : 0;
}

uint32_t DnsResponder::handle(uint16_t network, MacKey leg_mac, const uint8_t* frame,
                              const ParsedFrame& p, uint8_t* out, DropReason& drop) const {
  drop = DropReason::kNone;
  if (!zones_.contains(network) || p.fragment) return 0;
  DnsQuery q;
  drop = parse_dns_query(frame + p.payload, p.payload_len, q);
  if (drop != DropReason::kNone) return 0;
  uint32_t ip = q.qclass == kDnsClassIn ? lookup(network, q.name) : 0;
  bool answer = ip && q.qtype == kDnsTypeA;

  const uint8_t* in_ip = frame + p.l3;
  std::memset(out, 0, kReplySize);
  std::memcpy(out, frame + 6, 6);
  put_mac(out + 6, leg_mac);
  store_be16(out + 12, kEtherTypeIpv4);
  uint8_t* oip = out + kEthHeaderLen;
  uint8_t* udp = oip + 20;
  uint8_t* dns = udp + 8;
  store_be16(dns, q.id);
  // QR, AA, the client's RD; NXDOMAIN when nobody has the name.
  uint16_t flags = 0x8400 | (q.flags & 0x0100) | (ip ? 0 : kRcodeNxDomain);
  store_be16(dns + 2, flags);
  store_be16(dns + 4, 1);
  store_be16(dns + 6, answer ? 1 : 0);
  uint32_t n = kDnsHeaderLen + put_name(dns + kDnsHeaderLen, q.name);
  store_be16(dns + n, q.qtype);
  store_be16(dns + n + 2, q.qclass);
  n += 4;
  if (answer) {
    store_be16(dns + n, 0xc000 | kDnsHeaderLen);  // the name in the question
    store_be16(dns + n + 2, kDnsTypeA);
    store_be16(dns + n + 4, kDnsClassIn);
    store_be32(dns + n + 6, kTtl);
    store_be16(dns + n + 10, 4);
    store_be32(dns + n + 12, ip);
    n += 16;
  }
  uint16_t udp_len = static_cast<uint16_t>(8 + n);
  store_be16(udp, p.dst_port);
  store_be16(udp + 2, p.src_port);
  store_be16(udp + 4, udp_len);
  const uint8_t header[12] = {0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, kIpProtoUdp, 0, 0};
  std::memcpy(oip, header, sizeof(header));
  store_be16(oip + 2, static_cast<uint16_t>(20 + udp_len));
  std::memcpy(oip + 12, in_ip + 16, 4);  // from the address that was asked
  std::memcpy(oip + 16, in_ip + 12, 4);
  store_be16(oip + 10, checksum(oip, 20));
  uint16_t sum =
      checksum_finish(checksum_add(udp, udp_len, ipv4_pseudo_sum(oip, kIpProtoUdp, udp_len)));
  store_be16(udp + 6, sum ? sum : 0xffff);
  return kEthHeaderLen + 20 + udp_len;
}

}  // namespace vireo::net
