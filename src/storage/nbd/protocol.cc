#include "storage/nbd/protocol.h"

#include "storage/io.h"

namespace vireo::storage::nbd {

namespace {

std::unexpected<Error> invalid(std::string_view what) {
  return make_error(ErrorCode::kInvalidArgument, "malformed option: {}", what);
}

// Reads a length-prefixed string at pos, advancing pos; max bounds the length.
Result<std::string> take_string(std::span<const uint8_t> d, size_t& pos, size_t max) {
  if (d.size() - pos < 4) return invalid("truncated string length");
  uint32_t n = load_be32(&d[pos]);
  pos += 4;
  if (n > max || n > d.size() - pos) return invalid("string length out of range");
  std::string s(reinterpret_cast<const char*>(&d[pos]), n);
  pos += n;
  return s;
}

void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.resize(out.size() + 2);
  store_be16(&out[out.size() - 2], v);
}
void put32(std::vector<uint8_t>& out, uint32_t v) {
  out.resize(out.size() + 4);
  store_be32(&out[out.size() - 4], v);
}
void put64(std::vector<uint8_t>& out, uint64_t v) {
  out.resize(out.size() + 8);
  store_be64(&out[out.size() - 8], v);
}

constexpr size_t kMaxName = 4096;

}  // namespace

Result<Request> parse_request(std::span<const uint8_t, kRequestSize> b) {
  if (load_be32(&b[0]) != kRequestMagic)
    return make_error(ErrorCode::kInvalidArgument, "bad request magic {:#x}", load_be32(&b[0]));
  Request r;
  r.flags = load_be16(&b[4]);
  r.type = load_be16(&b[6]);
  r.cookie = load_be64(&b[8]);
  r.offset = load_be64(&b[16]);
  r.length = load_be32(&b[24]);
  return r;
}

uint32_t validate_request(const Request& r, const Session& s) {
  constexpr uint16_t kKnownFlags =
      kCmdFlagFua | kCmdFlagNoHole | kCmdFlagDf | kCmdFlagReqOne | kCmdFlagFastZero;
  if (r.flags & ~kKnownFlags) return kEinval;
  bool in_range = r.offset <= s.export_size && r.length <= s.export_size - r.offset;
  bool modifies = r.type == kCmdWrite || r.type == kCmdTrim || r.type == kCmdWriteZeroes;
  switch (r.type) {
    case kCmdRead:
    case kCmdWrite:
      if (r.length > kMaxPayload) return r.type == kCmdRead && s.structured ? kEoverflow : kEinval;
      break;
    case kCmdTrim:
    case kCmdWriteZeroes:
    case kCmdFlush:
    case kCmdDisc:
      break;
    case kCmdBlockStatus:
      if (!s.base_allocation || r.length == 0) return kEinval;
      break;
    default:
      return kEinval;
  }
  if ((r.flags & kCmdFlagFastZero) && r.type != kCmdWriteZeroes) return kEinval;
  if ((r.flags & kCmdFlagNoHole) && r.type != kCmdWriteZeroes) return kEinval;
  if ((r.flags & kCmdFlagReqOne) && r.type != kCmdBlockStatus) return kEinval;
  if ((r.flags & kCmdFlagDf) && r.type != kCmdRead) return kEinval;
  if (modifies && s.read_only) return kEperm;
  if (r.type != kCmdFlush && r.type != kCmdDisc && !in_range) return modifies ? kEnospc : kEinval;
  return 0;
}

Result<GoRequest> parse_go(std::span<const uint8_t> d) {
  GoRequest g;
  size_t pos = 0;
  g.name = TRY(take_string(d, pos, kMaxName));
  if (d.size() - pos < 2) return invalid("truncated information request count");
  uint16_t n = load_be16(&d[pos]);
  pos += 2;
  if (d.size() - pos != size_t(n) * 2) return invalid("information request count mismatch");
  for (uint16_t i = 0; i < n; ++i) g.infos.push_back(load_be16(&d[pos + 2 * i]));
  return g;
}

Result<MetaContextRequest> parse_meta_context(std::span<const uint8_t> d) {
  MetaContextRequest m;
  size_t pos = 0;
  m.export_name = TRY(take_string(d, pos, kMaxName));
  if (d.size() - pos < 4) return invalid("truncated query count");
  uint32_t n = load_be32(&d[pos]);
  pos += 4;
  if (n > (d.size() - pos) / 4) return invalid("query count out of range");
  for (uint32_t i = 0; i < n; ++i) m.queries.push_back(TRY(take_string(d, pos, kMaxName)));
  if (pos != d.size()) return invalid("trailing bytes");
  return m;
}

void append_option_reply(std::vector<uint8_t>& out, uint32_t option, uint32_t type,
                         std::span<const uint8_t> data) {
  put64(out, kOptReplyMagic);
  put32(out, option);
  put32(out, type);
  put32(out, uint32_t(data.size()));
  out.insert(out.end(), data.begin(), data.end());
}

void append_simple_reply(std::vector<uint8_t>& out, uint32_t error, uint64_t cookie) {
  put32(out, kSimpleReplyMagic);
  put32(out, error);
  put64(out, cookie);
}

void append_chunk_header(std::vector<uint8_t>& out, uint16_t flags, uint16_t type, uint64_t cookie,
                         uint32_t payload_length) {
  put32(out, kStructuredReplyMagic);
  put16(out, flags);
  put16(out, type);
  put64(out, cookie);
  put32(out, payload_length);
}

void append_error_chunk(std::vector<uint8_t>& out, uint64_t cookie, uint32_t error,
                        std::string_view message) {
  message = message.substr(0, 4096);
  append_chunk_header(out, kReplyFlagDone, kReplyError, cookie, uint32_t(6 + message.size()));
  put32(out, error);
  put16(out, uint16_t(message.size()));
  out.insert(out.end(), message.begin(), message.end());
}

}  // namespace vireo::storage::nbd
