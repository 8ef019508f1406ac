#pragma once
// Internet checksums (and the byte-order helpers from base/endian.h) for the packet pipeline.
// Header-only and free of <expected>, so the parser builds with the fuzzing compiler (clang 14,
// C++20) as well.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "base/endian.h"

namespace vireo::net {

using vireo::load_be16;
using vireo::load_be32;
using vireo::store_be16;
using vireo::store_be32;

// One's-complement sum of data (RFC 1071), not yet folded or inverted, added to sum.
inline uint64_t checksum_add(const uint8_t* data, size_t len, uint64_t sum = 0) {
  while (len >= 4) {
    sum += load_be32(data);
    data += 4;
    len -= 4;
  }
  if (len >= 2) {
    sum += load_be16(data);
    data += 2;
    len -= 2;
  }
  if (len) sum += uint32_t{data[0]} << 8;
  return sum;
}

// Folds a sum to 16 bits and inverts it: the value to store in a checksum field.
inline uint16_t checksum_finish(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xffff);
}

inline uint16_t checksum(const uint8_t* data, size_t len) {
  return checksum_finish(checksum_add(data, len));
}

// Pseudo-header sum for TCP/UDP over IPv4 (addresses taken from the IPv4 header at ip).
inline uint64_t ipv4_pseudo_sum(const uint8_t* ip, uint8_t proto, uint32_t l4_len) {
  return checksum_add(ip + 12, 8) + proto + l4_len;
}

// Incremental update (RFC 1624) of a checksum field when a 16-bit word changes from old to new.
inline void checksum_replace16(uint8_t* field, uint16_t old_word, uint16_t new_word) {
  uint32_t sum = static_cast<uint16_t>(~load_be16(field)) + static_cast<uint16_t>(~old_word) +
                 uint32_t{new_word};
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  store_be16(field, static_cast<uint16_t>(~sum));
}
inline void checksum_replace32(uint8_t* field, uint32_t old_word, uint32_t new_word) {
  checksum_replace16(field, static_cast<uint16_t>(old_word >> 16),
                     static_cast<uint16_t>(new_word >> 16));
  checksum_replace16(field, static_cast<uint16_t>(old_word), static_cast<uint16_t>(new_word));
}

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeArp = 0x0806;
constexpr uint16_t kEtherTypeVlan = 0x8100;
constexpr uint16_t kEtherTypeQinQ = 0x88a8;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
constexpr uint8_t kIpProtoIcmp = 1;
constexpr uint8_t kIpProtoTcp = 6;
constexpr uint8_t kIpProtoUdp = 17;
constexpr uint16_t kVxlanPort = 4789;
constexpr uint16_t kDhcpServerPort = 67;
constexpr uint16_t kDhcpClientPort = 68;
constexpr size_t kEthHeaderLen = 14;
constexpr size_t kVlanTagLen = 4;

}  // namespace vireo::net
