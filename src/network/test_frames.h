#pragma once
// Builders of well-formed frames for unit tests; tests then corrupt them on purpose.
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "network/wire.h"

namespace vireo::net::testing {

using Bytes = std::vector<uint8_t>;

inline void append(Bytes& b, std::initializer_list<uint8_t> v) {
  b.insert(b.end(), v);
}
inline void append16(Bytes& b, uint16_t v) {
  append(b, {uint8_t(v >> 8), uint8_t(v)});
}
inline void append32(Bytes& b, uint32_t v) {
  append16(b, uint16_t(v >> 16));
  append16(b, uint16_t(v));
}

struct Mac {
  uint8_t b[6];
};
inline Mac mac(uint8_t last) {
  return Mac{{0x02, 0, 0, 0, 0, last}};
}
inline constexpr Mac kBroadcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

inline Bytes ethernet(Mac dst, Mac src, uint16_t type, int vlan = -1) {
  Bytes b(dst.b, dst.b + 6);
  b.insert(b.end(), src.b, src.b + 6);
  if (vlan >= 0) {
    append16(b, kEtherTypeVlan);
    append16(b, uint16_t(vlan));
  }
  append16(b, type);
  return b;
}

// IPv4 header with a correct checksum, followed by payload.
inline Bytes ipv4(uint32_t src, uint32_t dst, uint8_t proto, const Bytes& payload,
                  uint8_t ttl = 64) {
  Bytes b;
  append(b, {0x45, 0});
  append16(b, uint16_t(20 + payload.size()));
  append32(b, 0x12344000);  // id, DF
  append(b, {ttl, proto, 0, 0});
  append32(b, src);
  append32(b, dst);
  store_be16(b.data() + 10, checksum(b.data(), 20));
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

inline Bytes udp(uint16_t sport, uint16_t dport, const Bytes& payload) {
  Bytes b;
  append16(b, sport);
  append16(b, dport);
  append16(b, uint16_t(8 + payload.size()));
  append16(b, 0);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

inline Bytes tcp(uint16_t sport, uint16_t dport, uint8_t flags, const Bytes& payload = {}) {
  Bytes b;
  append16(b, sport);
  append16(b, dport);
  append32(b, 1000);
  append32(b, 0);
  append(b, {0x50, flags});
  append16(b, 65535);
  append32(b, 0);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

inline Bytes icmp_echo(uint8_t type, uint16_t id, uint16_t seq, const Bytes& data = {}) {
  Bytes b;
  append(b, {type, 0, 0, 0});
  append16(b, id);
  append16(b, seq);
  b.insert(b.end(), data.begin(), data.end());
  store_be16(b.data() + 2, checksum(b.data(), b.size()));
  return b;
}

inline Bytes arp(uint16_t op, Mac sha, uint32_t spa, Mac tha, uint32_t tpa) {
  Bytes b;
  append16(b, 1);
  append16(b, kEtherTypeIpv4);
  append(b, {6, 4});
  append16(b, op);
  b.insert(b.end(), sha.b, sha.b + 6);
  append32(b, spa);
  b.insert(b.end(), tha.b, tha.b + 6);
  append32(b, tpa);
  return b;
}

inline Bytes dhcp_discover(Mac client) {
  Bytes b(236, 0);
  b[0] = 1;
  b[1] = 1;
  b[2] = 6;
  for (int i = 0; i < 6; ++i) b[28 + i] = client.b[i];
  append32(b, 0x63825363);
  append(b, {53, 1, 1, 255});
  return b;
}

inline Bytes vxlan(uint32_t vni, const Bytes& inner, uint8_t flags = 0x08) {
  Bytes b;
  append(b, {flags, 0, 0, 0});
  append32(b, vni << 8);
  b.insert(b.end(), inner.begin(), inner.end());
  return b;
}

inline Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

constexpr uint32_t ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return uint32_t{a} << 24 | uint32_t{b} << 16 | uint32_t{c} << 8 | d;
}

}  // namespace vireo::net::testing
