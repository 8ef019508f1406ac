// libFuzzer target for the packet parsing pipeline: every input is parsed as a frame, a VXLAN
// payload is decapsulated and its inner frame parsed, as the datapath and the VXLAN port do,
// and UDP payloads (and the raw input) are parsed as DNS queries, as the DNS responder does.
#include <cstddef>
#include <cstdint>

#include "network/dns_message.h"
#include "network/parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vireo::net;
  if (size > 70000) return 0;
  ParsedFrame frame;
  auto len = static_cast<uint32_t>(size);
  DnsQuery query;
  (void)parse_dns_query(data, len, query);
  // The VXLAN port receives UDP payloads: the raw input as one.
  uint32_t vni = 0;
  if (parse_vxlan_header(data, len, vni) == DropReason::kNone) {
    ParsedFrame inner;
    (void)parse_frame(data + kVxlanHeaderLen, len - kVxlanHeaderLen, inner);
  }
  for (ChecksumCheck check : {ChecksumCheck::kVerify, ChecksumCheck::kSkip}) {
    if (parse_frame(data, len, frame, ParseOptions{.ipv4_checksum = check}) != DropReason::kNone)
      continue;
    if (frame.app == App::kVxlan && frame.inner <= len) {
      ParsedFrame inner;
      (void)parse_frame(data + frame.inner, len - frame.inner, inner);
    }
    if (frame.l4_kind == L4::kUdp && frame.payload <= len &&
        frame.payload_len <= len - frame.payload)
      (void)parse_dns_query(data + frame.payload, frame.payload_len, query);
  }
  return 0;
}
