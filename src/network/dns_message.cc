#include "network/dns_message.h"

#include "network/wire.h"

namespace vireo::net {
namespace {

constexpr int kMaxPointers = 16;

char lower(uint8_t c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : static_cast<char>(c);
}

// Reads the name at pos; end receives the offset after the name where it started (before any
// pointer was followed).
DropReason parse_name(const uint8_t* msg, uint32_t len, uint32_t pos, DnsQuery& out,
                      uint32_t& end) {
  bool jumped = false;
  int pointers = 0;
  out.name_len = 0;
  for (;;) {
    if (pos >= len) return DropReason::kDnsTruncated;
    uint8_t l = msg[pos];
    if ((l & 0xc0) == 0xc0) {
      if (pos + 1 >= len) return DropReason::kDnsTruncated;
      uint32_t target = uint32_t{l & 0x3fu} << 8 | msg[pos + 1];
      // Only backwards, and not forever: a pointer loop is an attack, not a name.
      if (target >= pos || ++pointers > kMaxPointers) return DropReason::kDnsBadFormat;
      if (!jumped) end = pos + 2;
      jumped = true;
      pos = target;
      continue;
    }
    if (l & 0xc0) return DropReason::kDnsBadFormat;  // 0x40/0x80: reserved label types
    if (l == 0) {
      if (!jumped) end = pos + 1;
      out.name[out.name_len] = '\0';
      return DropReason::kNone;
    }
    if (len - pos - 1 < l) return DropReason::kDnsTruncated;
    uint32_t need = out.name_len + (out.name_len ? 1u : 0u) + l;
    if (need > kDnsMaxName) return DropReason::kDnsBadFormat;
    if (out.name_len) out.name[out.name_len++] = '.';
    for (uint32_t i = 0; i < l; ++i) {
      uint8_t c = msg[pos + 1 + i];
      // Host names only: letters, digits, hyphen, underscore. Anything else is not ours.
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_';
      if (!ok) return DropReason::kDnsBadFormat;
      out.name[out.name_len++] = lower(c);
    }
    pos += 1u + l;
  }
}

}  // namespace

DropReason parse_dns_query(const uint8_t* msg, uint32_t len, DnsQuery& out) {
  out = DnsQuery{};
  if (msg == nullptr || len < kDnsHeaderLen) return DropReason::kDnsTruncated;
  out.id = load_be16(msg);
  out.flags = load_be16(msg + 2);
  bool response = out.flags & 0x8000;
  uint16_t opcode = (out.flags >> 11) & 0xf;
  if (response || opcode != 0 || load_be16(msg + 4) != 1) return DropReason::kDnsBadFormat;
  uint32_t end = 0;
  DropReason r = parse_name(msg, len, kDnsHeaderLen, out, end);
  if (r != DropReason::kNone) return r;
  if (len - end < 4) return DropReason::kDnsTruncated;
  out.qtype = load_be16(msg + end);
  out.qclass = load_be16(msg + end + 2);
  return DropReason::kNone;
}

}  // namespace vireo::net
