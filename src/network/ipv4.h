#pragma once
// IPv4 addresses and prefixes as text (control API) and as host-order integers (datapath).
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vireo::net {

struct Cidr {
  uint32_t addr = 0;  // network address, host bits cleared
  uint8_t prefix = 0;
  uint32_t mask() const { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }
  bool contains(uint32_t ip) const { return (ip & mask()) == addr; }
};

[[nodiscard]] Result<uint32_t> parse_ipv4(std::string_view text);
// "10.0.0.0/24"; host bits set in the address are an error.
[[nodiscard]] Result<Cidr> parse_cidr(std::string_view text);
std::string format_ipv4(uint32_t addr);
std::string format_cidr(const Cidr& cidr);
std::string format_mac(uint64_t mac);

}  // namespace vireo::net
