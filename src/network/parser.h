#pragma once
// The zero-copy packet parser: validates an Ethernet frame layer by layer (802.1Q, ARP, IPv4,
// ICMP, UDP, TCP, VXLAN, DHCP) and records offsets into the caller's buffer; it never copies and
// never reads outside [data, data + len). A frame that fails a check yields the reason it is
// dropped. Plain return codes instead of Result: this is the hot path, and it must also build
// with the fuzzing compiler, which lacks <expected>. Stateless and thread-safe.
#include <cstdint>

#include "network/drop_reason.h"
#include "network/wire.h"

namespace vireo::net {

enum class L4 : uint8_t { kNone, kIcmp, kUdp, kTcp, kOther };
enum class App : uint8_t { kNone, kVxlan, kDhcp };

// What parse_frame learned. Offsets count from the start of the frame; 0 means absent where
// that cannot be a valid offset.
struct ParsedFrame {
  uint32_t len = 0;      // bytes of the frame handed to the parser
  bool tagged = false;   // an 802.1Q tag follows the MAC addresses
  uint16_t vlan_id = 0;  // from the tag, when tagged
  uint8_t vlan_pcp = 0;
  uint16_t ethertype = 0;  // after the tag
  uint32_t l3 = 0;         // start of the ARP or IPv4 header
  uint32_t ip_len = 0;     // IPv4 total length (frame may carry padding after it)
  uint8_t ip_proto = 0;
  bool fragment = false;        // IPv4 MF set or offset non-zero
  bool later_fragment = false;  // offset non-zero: no L4 header in this packet
  L4 l4_kind = L4::kNone;
  uint32_t l4 = 0;       // start of the ICMP/UDP/TCP header
  uint32_t payload = 0;  // start of the L4 payload
  uint32_t payload_len = 0;
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint8_t tcp_flags = 0;
  App app = App::kNone;
  uint32_t vni = 0;       // VXLAN network identifier, when app == kVxlan
  uint32_t inner = 0;     // start of the inner Ethernet frame, when app == kVxlan
  uint8_t dhcp_type = 0;  // DHCP message type (option 53), 0 when absent

  bool is_ipv4() const { return ethertype == kEtherTypeIpv4; }
  bool is_arp() const { return ethertype == kEtherTypeArp; }
};

enum class ChecksumCheck : uint8_t { kVerify, kSkip };

struct ParseOptions {
  ChecksumCheck ipv4_checksum = ChecksumCheck::kVerify;
  uint16_t vxlan_port = 4789;  // UDP destination port recognised as VXLAN
};

// Parses one frame. Returns DropReason::kNone when the frame is well formed.
DropReason parse_frame(const uint8_t* data, uint32_t len, ParsedFrame& out,
                       const ParseOptions& options = {});

// Validates a VXLAN header and the inner Ethernet header behind it (msg points at the VXLAN
// header, len counts to the end of the UDP payload); sets vni. The inner frame starts at
// msg + kVxlanHeaderLen.
constexpr uint32_t kVxlanHeaderLen = 8;
DropReason parse_vxlan_header(const uint8_t* msg, uint32_t len, uint32_t& vni);

}  // namespace vireo::net
