#include "network/dhcp_server.h"

#include <cstring>

#include "network/dns_responder.h"
#include "network/wire.h"

namespace vireo::net {
namespace {

constexpr uint8_t kDiscover = 1, kOffer = 2, kRequest = 3, kAck = 5, kNak = 6, kRelease = 7;
constexpr uint32_t kBootpFixed = 236;
constexpr uint64_t kSec = 1'000'000'000ull;

// The value of option code in msg (after the magic cookie) and its length, or null.
const uint8_t* find_option_any(const uint8_t* msg, uint32_t len, uint8_t code, uint8_t& out_len) {
  for (uint32_t pos = kBootpFixed + 4; pos + 1 < len;) {
    uint8_t c = msg[pos];
    if (c == 255) break;
    if (c == 0) {
      ++pos;
      continue;
    }
    uint8_t l = msg[pos + 1];
    if (pos + 2u + l > len) break;
    if (c == code) {
      out_len = l;
      return msg + pos + 2;
    }
    pos += 2u + l;
  }
  return nullptr;
}

// The client's host name (option 12) when it is a valid DNS label, lower case; else "".
std::string client_hostname(const uint8_t* msg, uint32_t len) {
  uint8_t l = 0;
  const uint8_t* v = find_option_any(msg, len, 12, l);
  if (!v) return {};
  std::string name(reinterpret_cast<const char*>(v), l);
  if (!valid_dns_label(name)) return {};
  for (char& c : name)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return name;
}

// The value of option code when it is want_len bytes long, or null.
const uint8_t* find_option(const uint8_t* msg, uint32_t len, uint8_t code, uint8_t want_len) {
  uint8_t l = 0;
  const uint8_t* v = find_option_any(msg, len, code, l);
  return v && l == want_len ? v : nullptr;
}

uint8_t* put_option(uint8_t* p, uint8_t code, uint32_t value, uint8_t len = 4) {
  p[0] = code;
  p[1] = len;
  if (len == 1)
    p[2] = static_cast<uint8_t>(value);
  else
    store_be32(p + 2, value);
  return p + 2 + len;
}

}  // namespace

void DhcpServer::enable(uint16_t network, const Cidr& subnet, uint32_t gateway) {
  Pool& p = pools_[network];
  p.subnet = subnet;
  p.gateway = gateway;
}

void DhcpServer::disable(uint16_t network) {
  pools_.erase(network);
}

Result<void> DhcpServer::reserve(uint16_t network, MacKey mac, uint32_t ip,
                                 const std::string& name) {
  auto it = pools_.find(network);
  if (it == pools_.end()) return make_error(ErrorCode::kConflict, "DHCP is off in this network");
  Pool& p = it->second;
  uint32_t broadcast = p.subnet.addr | ~p.subnet.mask();
  if (!p.subnet.contains(ip) || ip == p.gateway || ip == p.subnet.addr || ip == broadcast)
    return make_error(ErrorCode::kInvalidArgument, "{} is not a free host address of {}",
                      format_ipv4(ip), format_cidr(p.subnet));
  for (const auto& [m, lease] : p.leases)
    if (lease.ip == ip && m != mac)
      return make_error(ErrorCode::kConflict, "{} is leased to {}", format_ipv4(ip), format_mac(m));
  std::string lower = name;
  for (char& c : lower)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  p.leases[mac] = DhcpLease{ip, 0, lower};
  return {};
}

Result<void> DhcpServer::adopt_lease(uint16_t network, MacKey mac, uint32_t ip,
                                     const std::string& hostname, uint64_t now_ns,
                                     uint64_t lifetime_ns) {
  auto it = pools_.find(network);
  if (it == pools_.end()) return make_error(ErrorCode::kConflict, "DHCP is off in this network");
  Pool& p = it->second;
  if (auto held = p.leases.find(mac); held != p.leases.end() && held->second.expires_ns == 0)
    return {};
  uint32_t broadcast = p.subnet.addr | ~p.subnet.mask();
  if (!p.subnet.contains(ip) || ip == p.gateway || ip == p.subnet.addr || ip == broadcast)
    return make_error(ErrorCode::kInvalidArgument, "{} is not a host address of {}",
                      format_ipv4(ip), format_cidr(p.subnet));
  for (const auto& [m, lease] : p.leases)
    if (lease.ip == ip && m != mac && (lease.expires_ns == 0 || lease.expires_ns >= now_ns))
      return make_error(ErrorCode::kConflict, "{} is leased to {}", format_ipv4(ip), format_mac(m));
  p.leases[mac] = DhcpLease{ip, now_ns + lifetime_ns, hostname};
  ++lease_generation_;
  return {};
}

std::vector<std::pair<MacKey, DhcpLease>> DhcpServer::dynamic_leases(uint16_t network,
                                                                     uint64_t now_ns) const {
  std::vector<std::pair<MacKey, DhcpLease>> out;
  if (auto it = pools_.find(network); it != pools_.end())
    for (const auto& [mac, lease] : it->second.leases)
      if (lease.expires_ns != 0 && lease.expires_ns > now_ns) out.emplace_back(mac, lease);
  return out;
}

std::vector<std::pair<MacKey, DhcpLease>> DhcpServer::reservations(uint16_t network) const {
  std::vector<std::pair<MacKey, DhcpLease>> out;
  if (auto it = pools_.find(network); it != pools_.end())
    for (const auto& [mac, lease] : it->second.leases)
      if (lease.expires_ns == 0) out.emplace_back(mac, lease);
  return out;
}

std::vector<std::pair<std::string, uint32_t>> DhcpServer::hostnames(uint16_t network) const {
  std::vector<std::pair<std::string, uint32_t>> out;
  auto it = pools_.find(network);
  if (it == pools_.end()) return out;
  for (const auto& [mac, lease] : it->second.leases)
    if (!lease.hostname.empty() && (lease.expires_ns == 0 || lease.expires_ns >= now_ns_))
      out.emplace_back(lease.hostname, lease.ip);
  return out;
}

uint32_t DhcpServer::lookup_hostname(uint16_t network, std::string_view name) const {
  auto it = pools_.find(network);
  if (it == pools_.end()) return 0;
  for (const auto& [mac, lease] : it->second.leases)
    if (lease.hostname == name && (lease.expires_ns == 0 || lease.expires_ns >= now_ns_))
      return lease.ip;
  return 0;
}

Json DhcpServer::leases_json(uint16_t network) const {
  Json list = Json::array();
  auto it = pools_.find(network);
  if (it == pools_.end()) return list;
  for (const auto& [mac, lease] : it->second.leases) {
    Json j{
        {"mac", format_mac(mac)}, {"ip", format_ipv4(lease.ip)}, {"static", lease.expires_ns == 0}};
    if (!lease.hostname.empty()) j["hostname"] = lease.hostname;
    list.push_back(j);
  }
  return list;
}

uint32_t DhcpServer::free_address(Pool& p, uint64_t now_ns) {
  uint32_t first = p.subnet.addr + 1, last = (p.subnet.addr | ~p.subnet.mask()) - 1;
  for (uint32_t ip = first; ip <= last && ip >= first; ++ip) {
    if (ip == p.gateway) continue;
    bool taken = false;
    for (auto& [m, lease] : p.leases) {
      if (lease.ip != ip) continue;
      // An expired dynamic lease is given to the next client.
      if (lease.expires_ns != 0 && lease.expires_ns < now_ns) {
        p.leases.erase(m);
        break;
      }
      taken = true;
      break;
    }
    if (!taken) return ip;
  }
  return 0;
}

uint32_t DhcpServer::allocate(Pool& p, MacKey mac, uint64_t now_ns) {
  if (auto it = p.leases.find(mac); it != p.leases.end()) return it->second.ip;
  uint32_t ip = free_address(p, now_ns);
  if (ip != 0) {
    p.leases[mac] = DhcpLease{ip, now_ns + kLeaseSeconds * kSec};
    ++lease_generation_;
  }
  return ip;
}

Result<uint32_t> DhcpServer::reserve_free(uint16_t network, MacKey mac, const std::string& name) {
  auto it = pools_.find(network);
  if (it == pools_.end()) return make_error(ErrorCode::kConflict, "DHCP is off in this network");
  Pool& p = it->second;
  uint32_t ip = 0;
  if (auto held = p.leases.find(mac); held != p.leases.end()) ip = held->second.ip;
  if (ip == 0) ip = free_address(p, now_ns_);
  if (ip == 0)
    return make_error(ErrorCode::kConflict, "no free address left in {}", format_cidr(p.subnet));
  TRY(reserve(network, mac, ip, name));
  return ip;
}

bool DhcpServer::unreserve(uint16_t network, MacKey mac) {
  auto it = pools_.find(network);
  return it != pools_.end() && it->second.leases.erase(mac) > 0;
}

uint32_t DhcpServer::handle(uint16_t network, MacKey leg_mac, const uint8_t* frame,
                            const ParsedFrame& parsed, uint64_t now_ns, uint8_t* out) {
  auto pool = pools_.find(network);
  if (pool == pools_.end() || parsed.dst_port != kDhcpServerPort) return 0;
  Pool& p = pool->second;
  now_ns_ = now_ns;
  const uint8_t* msg = frame + parsed.payload;
  uint32_t len = parsed.payload_len;
  if (msg[0] != 1) return 0;  // only BOOTREQUESTs are for us
  MacKey mac = mac_key(msg + 28);
  uint8_t reply_type = 0;
  uint32_t ip = 0;
  if (parsed.dhcp_type == kDiscover) {
    ip = allocate(p, mac, now_ns);
    reply_type = ip ? kOffer : 0;
  } else if (parsed.dhcp_type == kRequest) {
    const uint8_t* requested = find_option(msg, len, 50, 4);
    uint32_t want = requested ? load_be32(requested) : load_be32(msg + 12);
    auto lease = p.leases.find(mac);
    bool ours = lease != p.leases.end() && lease->second.ip == want;
    if (ours && lease->second.expires_ns) {
      lease->second.expires_ns = now_ns + kLeaseSeconds * kSec;
      ++lease_generation_;
      if (std::string name = client_hostname(msg, len); !name.empty())
        lease->second.hostname = name;
    }
    ip = ours ? want : 0;
    reply_type = ours ? kAck : kNak;
  } else if (parsed.dhcp_type == kRelease) {
    auto lease = p.leases.find(mac);
    if (lease != p.leases.end() && lease->second.expires_ns) {
      p.leases.erase(lease);
      ++lease_generation_;
    }
    return 0;
  }
  if (!reply_type) return 0;

  std::memset(out, 0, kReplySize);
  std::memset(out, 0xff, 6);  // broadcast: the client has no address yet
  for (int i = 0; i < 6; ++i) out[6 + i] = static_cast<uint8_t>(leg_mac >> (40 - 8 * i));
  store_be16(out + 12, kEtherTypeIpv4);
  uint8_t* ip_hdr = out + 14;
  uint8_t* udp = ip_hdr + 20;
  uint8_t* bootp = udp + 8;
  bootp[0] = 2;  // BOOTREPLY
  bootp[1] = 1;
  bootp[2] = 6;
  std::memcpy(bootp + 4, msg + 4, 4);     // xid
  std::memcpy(bootp + 10, msg + 10, 2);   // flags
  store_be32(bootp + 16, ip);             // yiaddr
  store_be32(bootp + 20, p.gateway);      // siaddr
  std::memcpy(bootp + 28, msg + 28, 16);  // chaddr
  store_be32(bootp + kBootpFixed, 0x63825363);
  uint8_t* o = bootp + kBootpFixed + 4;
  o = put_option(o, 53, reply_type, 1);
  o = put_option(o, 54, p.gateway);
  if (reply_type != kNak) {
    o = put_option(o, 51, kLeaseSeconds);
    o = put_option(o, 1, p.subnet.mask());
    o = put_option(o, 3, p.gateway);
    o = put_option(o, 6, p.gateway);  // the network's DNS responder
  }
  *o++ = 255;
  uint16_t bootp_len = static_cast<uint16_t>(std::max<long>(o - bootp, 300));
  store_be16(udp, kDhcpServerPort);
  store_be16(udp + 2, kDhcpClientPort);
  store_be16(udp + 4, static_cast<uint16_t>(8 + bootp_len));  // checksum 0: none (IPv4)
  const uint8_t header[12] = {0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, kIpProtoUdp, 0, 0};
  std::memcpy(ip_hdr, header, sizeof(header));
  store_be16(ip_hdr + 2, static_cast<uint16_t>(20 + 8 + bootp_len));
  store_be32(ip_hdr + 12, p.gateway);
  store_be32(ip_hdr + 16, 0xffffffff);
  store_be16(ip_hdr + 10, checksum(ip_hdr, 20));
  return 14 + 20 + 8 + bootp_len;
}

}  // namespace vireo::net
