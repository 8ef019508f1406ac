#pragma once
// DNS query parsing (RFC 1035) for the per-network DNS responder: one question, name labels
// checked for length (63 per label, 255 in all), compression pointers followed only backwards
// and at most a bounded number of times, so hostile messages cannot loop or read out of bounds.
// Like the packet parser it is free of <expected> and builds with the fuzzing compiler.
// Stateless and thread-safe.
#include <cstdint>

#include "network/drop_reason.h"

namespace vireo::net {

constexpr uint32_t kDnsHeaderLen = 12;
constexpr uint16_t kDnsTypeA = 1;
constexpr uint16_t kDnsClassIn = 1;
constexpr uint32_t kDnsMaxName = 255;

struct DnsQuery {
  uint16_t id = 0;
  uint16_t flags = 0;
  char name[kDnsMaxName + 1] = {};  // lower case, dotted, no trailing dot; "" for the root
  uint32_t name_len = 0;
  uint16_t qtype = 0;
  uint16_t qclass = 0;
};

// Parses a DNS query message (the UDP payload). Responses, opcodes other than QUERY and
// messages with other than one question are kDnsBadFormat.
DropReason parse_dns_query(const uint8_t* msg, uint32_t len, DnsQuery& out);

}  // namespace vireo::net
