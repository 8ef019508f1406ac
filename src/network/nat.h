#pragma once
// NAT: address translation for the router, on top of the connection tracker. Source NAT
// (masquerade) rewrites packets from a network marked "nat" that leave through an uplink
// network to the uplink's gateway address, with a source port (ICMP echo: identifier) chosen
// by Conntrack::create_snat; destination NAT (port forwards) sends what arrives on an uplink's
// gateway address and a forwarded port to an instance's address and port. Both are conntrack
// connections with translation: the first packet creates it, later packets in either
// direction are rewritten from it, and it expires with the connection's timeout.
// Checksums are fixed incrementally (RFC 1624), also for frames whose L4 checksum is left to
// the receiver (virtio NEEDS_CSUM: the field holds only the pseudo-header sum).
// Not thread-safe: the datapath thread owns it.
#include <cstdint>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "network/conntrack.h"
#include "network/parser.h"

namespace vireo::net {

struct PortForward {
  uint8_t proto = 0;  // kIpProtoTcp or kIpProtoUdp
  uint16_t host_port = 0;
  std::string network;  // where the instance lives (for the control API)
  uint32_t ip = 0;
  uint16_t port = 0;
};

class PortForwards {
 public:
  [[nodiscard]] Result<void> add(const PortForward& forward);
  [[nodiscard]] Result<void> remove(uint8_t proto, uint16_t host_port);
  void remove_network(const std::string& network);
  const PortForward* find(uint8_t proto, uint16_t host_port) const;
  const std::vector<PortForward>& list() const { return forwards_; }

 private:
  std::vector<PortForward> forwards_;
};

// Whether a packet can be translated: TCP, UDP or ICMP echo, not a later fragment.
bool nat_supported(const uint8_t* frame, const ParsedFrame& parsed);
// Rewrites the packet's addresses and ports (ICMP echo: identifier) to the tuple to, fixing the
// IPv4 and L4 checksums. partial_csum: the L4 checksum is completed by the receiver.
void nat_rewrite(uint8_t* frame, const ParsedFrame& parsed, const FlowKey& to, bool partial_csum);

// An ICMP error (destination unreachable, time exceeded, parameter problem) quoting a packet
// with at least its first 8 L4 bytes: returns true and the quoted packet's tuple.
bool icmp_error_quote(const uint8_t* frame, const ParsedFrame& parsed, FlowKey& quoted);
// Rewrites an ICMP error about a translated packet: the quoted packet to untranslated, the
// outer destination to untranslated's source (and the outer source, when it was the quoted
// destination, to untranslated's destination); checksums fixed incrementally.
void nat_rewrite_icmp_error(uint8_t* frame, const ParsedFrame& parsed, const FlowKey& quoted,
                            const FlowKey& untranslated);

Json to_json(const PortForward& forward);
// {"network", "host_port", "to": "IP:PORT", "protocol"?: "tcp"|"udp"}.
[[nodiscard]] Result<PortForward> port_forward_from_json(const Json& j);

}  // namespace vireo::net
