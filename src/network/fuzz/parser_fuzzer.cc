// libFuzzer target for the packet parsing pipeline: every input is parsed as a frame, and a
// VXLAN payload is parsed again as the inner frame, as the datapath does.
#include <cstddef>
#include <cstdint>

#include "network/parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vireo::net;
  if (size > 70000) return 0;
  ParsedFrame frame;
  auto len = static_cast<uint32_t>(size);
  for (ChecksumCheck check : {ChecksumCheck::kVerify, ChecksumCheck::kSkip}) {
    if (parse_frame(data, len, frame, ParseOptions{.ipv4_checksum = check}) != DropReason::kNone)
      continue;
    if (frame.app == App::kVxlan && frame.inner <= len) {
      ParsedFrame inner;
      (void)parse_frame(data + frame.inner, len - frame.inner, inner);
    }
  }
  return 0;
}
