#include "network/drop_reason.h"

namespace vireo::net {

const char* drop_reason_name(DropReason reason) {
  switch (reason) {
    case DropReason::kNone:
      return "none";
    case DropReason::kEthTruncated:
      return "eth_truncated";
    case DropReason::kVlanTruncated:
      return "vlan_truncated";
    case DropReason::kVlanStacked:
      return "vlan_stacked";
    case DropReason::kArpTruncated:
      return "arp_truncated";
    case DropReason::kArpBadFormat:
      return "arp_bad_format";
    case DropReason::kIpv4Truncated:
      return "ipv4_truncated";
    case DropReason::kIpv4BadVersion:
      return "ipv4_bad_version";
    case DropReason::kIpv4BadHeaderLength:
      return "ipv4_bad_header_length";
    case DropReason::kIpv4BadTotalLength:
      return "ipv4_bad_total_length";
    case DropReason::kIpv4BadChecksum:
      return "ipv4_bad_checksum";
    case DropReason::kIpv4BadFragment:
      return "ipv4_bad_fragment";
    case DropReason::kIcmpTruncated:
      return "icmp_truncated";
    case DropReason::kUdpTruncated:
      return "udp_truncated";
    case DropReason::kUdpBadLength:
      return "udp_bad_length";
    case DropReason::kTcpTruncated:
      return "tcp_truncated";
    case DropReason::kTcpBadHeaderLength:
      return "tcp_bad_header_length";
    case DropReason::kVxlanTruncated:
      return "vxlan_truncated";
    case DropReason::kVxlanBadFlags:
      return "vxlan_bad_flags";
    case DropReason::kVxlanUnknownVni:
      return "vxlan_unknown_vni";
    case DropReason::kDhcpTruncated:
      return "dhcp_truncated";
    case DropReason::kDhcpBadFormat:
      return "dhcp_bad_format";
    case DropReason::kDhcpBadOptions:
      return "dhcp_bad_options";
    case DropReason::kDnsTruncated:
      return "dns_truncated";
    case DropReason::kDnsBadFormat:
      return "dns_bad_format";
    case DropReason::kVlanNotAllowed:
      return "vlan_not_allowed";
    case DropReason::kMtuExceeded:
      return "mtu_exceeded";
    case DropReason::kNoPort:
      return "no_port";
    case DropReason::kHairpin:
      return "hairpin";
    case DropReason::kTtlExceeded:
      return "ttl_exceeded";
    case DropReason::kNoRoute:
      return "no_route";
    case DropReason::kFirewallDenied:
      return "firewall_denied";
    case DropReason::kTxFailed:
      return "tx_failed";
    case DropReason::kNatUnsupported:
      return "nat_unsupported";
    case DropReason::kNatExhausted:
      return "nat_exhausted";
    case DropReason::kVxlanNoSegment:
      return "vxlan_no_segment";
    case DropReason::kVxlanGso:
      return "vxlan_gso";
    case DropReason::kCount:
      break;
  }
  return "unknown";
}

}  // namespace vireo::net
