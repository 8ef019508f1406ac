#include "network/parser.h"

#include "network/wire.h"

namespace vireo::net {
namespace {

constexpr uint32_t kArpLen = 28;
constexpr uint32_t kIpv4MinHeader = 20;
constexpr uint32_t kUdpHeader = 8;
constexpr uint32_t kTcpMinHeader = 20;
constexpr uint32_t kIcmpHeader = 8;
constexpr uint32_t kVxlanHeader = 8;
constexpr uint32_t kBootpFixed = 236;
constexpr uint32_t kDhcpMagic = 0x63825363;
constexpr uint8_t kVxlanFlagVni = 0x08;

DropReason parse_arp(const uint8_t* data, uint32_t len, ParsedFrame& out) {
  if (len - out.l3 < kArpLen) return DropReason::kArpTruncated;
  const uint8_t* arp = data + out.l3;
  // Only Ethernet/IPv4 ARP requests and replies exist on a Vireo network.
  uint16_t op = load_be16(arp + 6);
  if (load_be16(arp) != 1 || load_be16(arp + 2) != kEtherTypeIpv4 || arp[4] != 6 || arp[5] != 4 ||
      (op != 1 && op != 2))
    return DropReason::kArpBadFormat;
  return DropReason::kNone;
}

// Walks the DHCP options TLVs; every length must stay inside the message.
DropReason parse_dhcp(const uint8_t* msg, uint32_t len, ParsedFrame& out) {
  if (len < kBootpFixed + 4) return DropReason::kDhcpTruncated;
  if ((msg[0] != 1 && msg[0] != 2) || msg[1] != 1 || msg[2] != 6 ||
      load_be32(msg + kBootpFixed) != kDhcpMagic)
    return DropReason::kDhcpBadFormat;
  uint32_t pos = kBootpFixed + 4;
  while (pos < len) {
    uint8_t code = msg[pos];
    if (code == 255) break;
    if (code == 0) {
      ++pos;
      continue;
    }
    if (len - pos < 2) return DropReason::kDhcpBadOptions;
    uint8_t opt_len = msg[pos + 1];
    if (len - pos - 2 < opt_len) return DropReason::kDhcpBadOptions;
    if (code == 53) {
      if (opt_len != 1) return DropReason::kDhcpBadOptions;
      out.dhcp_type = msg[pos + 2];
    }
    pos += 2u + opt_len;
  }
  out.app = App::kDhcp;
  return DropReason::kNone;
}

DropReason parse_vxlan(const uint8_t* msg, uint32_t len, ParsedFrame& out) {
  DropReason r = parse_vxlan_header(msg, len, out.vni);
  if (r != DropReason::kNone) return r;
  out.app = App::kVxlan;
  out.inner = out.payload + kVxlanHeader;
  return DropReason::kNone;
}

DropReason parse_udp(const uint8_t* data, uint32_t l4_len, ParsedFrame& out,
                     const ParseOptions& options) {
  if (l4_len < kUdpHeader) return DropReason::kUdpTruncated;
  const uint8_t* udp = data + out.l4;
  out.l4_kind = L4::kUdp;
  out.src_port = load_be16(udp);
  out.dst_port = load_be16(udp + 2);
  uint16_t udp_len = load_be16(udp + 4);
  // A first fragment carries only part of the datagram the UDP length describes.
  if (out.fragment) {
    out.payload = out.l4 + kUdpHeader;
    out.payload_len = l4_len - kUdpHeader;
    return DropReason::kNone;
  }
  if (udp_len < kUdpHeader || udp_len > l4_len) return DropReason::kUdpBadLength;
  out.payload = out.l4 + kUdpHeader;
  out.payload_len = udp_len - kUdpHeader;
  const uint8_t* payload = data + out.payload;
  if (out.dst_port == options.vxlan_port) return parse_vxlan(payload, out.payload_len, out);
  bool dhcp_ports = (out.dst_port == kDhcpServerPort && out.src_port == kDhcpClientPort) ||
                    (out.dst_port == kDhcpClientPort && out.src_port == kDhcpServerPort);
  if (dhcp_ports) return parse_dhcp(payload, out.payload_len, out);
  return DropReason::kNone;
}

DropReason parse_l4(const uint8_t* data, ParsedFrame& out, const ParseOptions& options) {
  uint32_t l4_len = out.l3 + out.ip_len - out.l4;
  switch (out.ip_proto) {
    case kIpProtoUdp:
      return parse_udp(data, l4_len, out, options);
    case kIpProtoTcp: {
      if (l4_len < kTcpMinHeader) return DropReason::kTcpTruncated;
      const uint8_t* tcp = data + out.l4;
      uint32_t header = uint32_t{tcp[12]} >> 4 << 2;
      if (header < kTcpMinHeader || header > l4_len) return DropReason::kTcpBadHeaderLength;
      out.l4_kind = L4::kTcp;
      out.src_port = load_be16(tcp);
      out.dst_port = load_be16(tcp + 2);
      out.tcp_flags = tcp[13];
      out.payload = out.l4 + header;
      out.payload_len = l4_len - header;
      return DropReason::kNone;
    }
    case kIpProtoIcmp:
      if (l4_len < kIcmpHeader) return DropReason::kIcmpTruncated;
      out.l4_kind = L4::kIcmp;
      out.payload = out.l4 + kIcmpHeader;
      out.payload_len = l4_len - kIcmpHeader;
      return DropReason::kNone;
    default:
      out.l4_kind = L4::kOther;
      return DropReason::kNone;
  }
}

DropReason parse_ipv4(const uint8_t* data, uint32_t len, ParsedFrame& out,
                      const ParseOptions& options) {
  uint32_t avail = len - out.l3;
  if (avail < kIpv4MinHeader) return DropReason::kIpv4Truncated;
  const uint8_t* ip = data + out.l3;
  if (ip[0] >> 4 != 4) return DropReason::kIpv4BadVersion;
  uint32_t header = uint32_t{ip[0] & 0x0fu} * 4;
  if (header < kIpv4MinHeader || header > avail) return DropReason::kIpv4BadHeaderLength;
  uint32_t total = load_be16(ip + 2);
  // The frame may carry Ethernet padding after the datagram, never less than the datagram.
  if (total < header || total > avail) return DropReason::kIpv4BadTotalLength;
  if (options.ipv4_checksum == ChecksumCheck::kVerify && checksum(ip, header) != 0)
    return DropReason::kIpv4BadChecksum;
  out.ip_len = total;
  out.ip_proto = ip[9];
  uint16_t frag = load_be16(ip + 6);
  uint32_t offset = uint32_t{frag & 0x1fffu} * 8;
  bool more = frag & 0x2000;
  out.fragment = more || offset != 0;
  out.later_fragment = offset != 0;
  // A fragment that would reassemble past 65535 bytes is an attack, not traffic.
  if (offset + (total - header) > 65535) return DropReason::kIpv4BadFragment;
  out.l4 = out.l3 + header;
  if (out.later_fragment) return DropReason::kNone;
  return parse_l4(data, out, options);
}

}  // namespace

DropReason parse_vxlan_header(const uint8_t* msg, uint32_t len, uint32_t& vni) {
  if (msg == nullptr || len < kVxlanHeader + kEthHeaderLen) return DropReason::kVxlanTruncated;
  // RFC 7348: the I flag must be set; reserved bits are ignored on receipt.
  if (!(msg[0] & kVxlanFlagVni)) return DropReason::kVxlanBadFlags;
  vni = uint32_t{msg[4]} << 16 | uint32_t{msg[5]} << 8 | msg[6];
  return DropReason::kNone;
}

DropReason parse_frame(const uint8_t* data, uint32_t len, ParsedFrame& out,
                       const ParseOptions& options) {
  out = ParsedFrame{};
  out.len = len;
  if (data == nullptr || len < kEthHeaderLen) return DropReason::kEthTruncated;
  uint16_t type = load_be16(data + 12);
  uint32_t l3 = kEthHeaderLen;
  if (type == kEtherTypeVlan || type == kEtherTypeQinQ) {
    if (len < kEthHeaderLen + kVlanTagLen) return DropReason::kVlanTruncated;
    uint16_t tci = load_be16(data + 14);
    out.tagged = true;
    out.vlan_id = tci & 0x0fff;
    out.vlan_pcp = static_cast<uint8_t>(tci >> 13);
    type = load_be16(data + 16);
    l3 += kVlanTagLen;
    if (type == kEtherTypeVlan || type == kEtherTypeQinQ) return DropReason::kVlanStacked;
  }
  out.ethertype = type;
  out.l3 = l3;
  if (type == kEtherTypeArp) return parse_arp(data, len, out);
  if (type == kEtherTypeIpv4) return parse_ipv4(data, len, out, options);
  return DropReason::kNone;
}

}  // namespace vireo::net
