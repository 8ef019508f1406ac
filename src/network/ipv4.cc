#include "network/ipv4.h"

#include <arpa/inet.h>

#include <charconv>

namespace vireo::net {

Result<uint32_t> parse_ipv4(std::string_view text) {
  std::string s(text);
  in_addr a{};
  if (s.empty() || ::inet_pton(AF_INET, s.c_str(), &a) != 1)
    return make_error(ErrorCode::kInvalidArgument, "invalid IPv4 address '{}'", text);
  return ntohl(a.s_addr);
}

Result<Cidr> parse_cidr(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos)
    return make_error(ErrorCode::kInvalidArgument, "invalid subnet '{}': expected ADDR/PREFIX",
                      text);
  uint32_t addr = TRY(parse_ipv4(text.substr(0, slash)));
  std::string_view p = text.substr(slash + 1);
  unsigned prefix = 0;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
  if (ec != std::errc{} || end != p.data() + p.size() || prefix > 32)
    return make_error(ErrorCode::kInvalidArgument, "invalid prefix length in '{}'", text);
  Cidr c{addr, static_cast<uint8_t>(prefix)};
  if ((addr & c.mask()) != addr)
    return make_error(ErrorCode::kInvalidArgument, "subnet '{}' has host bits set", text);
  return c;
}

std::string format_ipv4(uint32_t addr) {
  return fmt::format("{}.{}.{}.{}", addr >> 24, (addr >> 16) & 0xff, (addr >> 8) & 0xff,
                     addr & 0xff);
}

std::string format_cidr(const Cidr& cidr) {
  return fmt::format("{}/{}", format_ipv4(cidr.addr), cidr.prefix);
}

std::string format_mac(uint64_t mac) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", (mac >> 40) & 0xff,
                     (mac >> 32) & 0xff, (mac >> 24) & 0xff, (mac >> 16) & 0xff, (mac >> 8) & 0xff,
                     mac & 0xff);
}

}  // namespace vireo::net
