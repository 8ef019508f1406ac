#pragma once
// The NBD wire protocol (newstyle fixed handshake, simple and structured replies): constants and
// pure parsers over bytes, so that the fuzzer and the tests can drive them without a socket.
// Everything a client sends is checked here before the server acts on it.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace vireo::storage::nbd {

inline constexpr uint64_t kInitMagic = 0x4e42444d41474943;  // "NBDMAGIC"
inline constexpr uint64_t kOptMagic = 0x49484156454f5054;   // "IHAVEOPT"
inline constexpr uint64_t kOptReplyMagic = 0x3e889045565a9;
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;

// Handshake flags (server) and client flags.
inline constexpr uint16_t kFlagFixedNewstyle = 1;
inline constexpr uint16_t kFlagNoZeroes = 2;

enum Option : uint32_t {
  kOptExportName = 1,
  kOptAbort = 2,
  kOptList = 3,
  kOptStartTls = 5,
  kOptInfo = 6,
  kOptGo = 7,
  kOptStructuredReply = 8,
  kOptListMetaContext = 9,
  kOptSetMetaContext = 10,
};

enum OptionReply : uint32_t {
  kRepAck = 1,
  kRepServer = 2,
  kRepInfo = 3,
  kRepMetaContext = 4,
  kRepErrUnsup = 0x80000001,
  kRepErrPolicy = 0x80000002,
  kRepErrInvalid = 0x80000003,
  kRepErrTlsReqd = 0x80000005,
  kRepErrUnknown = 0x80000006,
  kRepErrTooBig = 0x80000009,
};

enum Info : uint16_t { kInfoExport = 0, kInfoName = 1, kInfoDescription = 2, kInfoBlockSize = 3 };

// Transmission flags.
inline constexpr uint16_t kTxHasFlags = 1 << 0;
inline constexpr uint16_t kTxReadOnly = 1 << 1;
inline constexpr uint16_t kTxSendFlush = 1 << 2;
inline constexpr uint16_t kTxSendFua = 1 << 3;
inline constexpr uint16_t kTxSendTrim = 1 << 5;
inline constexpr uint16_t kTxSendWriteZeroes = 1 << 6;
inline constexpr uint16_t kTxSendDf = 1 << 7;
inline constexpr uint16_t kTxCanMultiConn = 1 << 8;
inline constexpr uint16_t kTxSendFastZero = 1 << 11;

enum Command : uint16_t {
  kCmdRead = 0,
  kCmdWrite = 1,
  kCmdDisc = 2,
  kCmdFlush = 3,
  kCmdTrim = 4,
  kCmdCache = 5,
  kCmdWriteZeroes = 6,
  kCmdBlockStatus = 7,
};

inline constexpr uint16_t kCmdFlagFua = 1 << 0;
inline constexpr uint16_t kCmdFlagNoHole = 1 << 1;
inline constexpr uint16_t kCmdFlagDf = 1 << 2;
inline constexpr uint16_t kCmdFlagReqOne = 1 << 3;
inline constexpr uint16_t kCmdFlagFastZero = 1 << 4;

enum ReplyType : uint16_t {
  kReplyNone = 0,
  kReplyOffsetData = 1,
  kReplyBlockStatus = 5,
  kReplyError = 0x8001,
};
inline constexpr uint16_t kReplyFlagDone = 1;

// NBD error numbers (Linux values, as the protocol fixes them).
inline constexpr uint32_t kEperm = 1, kEio = 5, kEnomem = 12, kEinval = 22, kEnospc = 28,
                          kEoverflow = 75, kEnotsup = 95, kEshutdown = 108;

inline constexpr uint32_t kBaseAllocationId = 1;
inline constexpr const char* kBaseAllocation = "base:allocation";
inline constexpr uint32_t kMaxPayload = 32 << 20;    // largest READ/WRITE we serve
inline constexpr uint32_t kMaxOptionLength = 65536;  // larger options are refused
inline constexpr size_t kRequestSize = 28;

struct Request {
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
};

// Decodes a 28-byte request header; only a bad magic is an error (the stream is lost).
[[nodiscard]] Result<Request> parse_request(std::span<const uint8_t, kRequestSize> bytes);

// What a connection negotiated, for validating requests.
struct Session {
  uint64_t export_size = 0;
  bool read_only = false;
  bool structured = false;
  bool base_allocation = false;
};

// Checks a request against the session: 0 if it may run, else the NBD error to reply with.
uint32_t validate_request(const Request& r, const Session& s);

// NBD_OPT_INFO / NBD_OPT_GO data.
struct GoRequest {
  std::string name;
  std::vector<uint16_t> infos;
};
[[nodiscard]] Result<GoRequest> parse_go(std::span<const uint8_t> data);

// NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data.
struct MetaContextRequest {
  std::string export_name;
  std::vector<std::string> queries;
};
[[nodiscard]] Result<MetaContextRequest> parse_meta_context(std::span<const uint8_t> data);

// Reply builders (append to out).
void append_option_reply(std::vector<uint8_t>& out, uint32_t option, uint32_t type,
                         std::span<const uint8_t> data);
void append_simple_reply(std::vector<uint8_t>& out, uint32_t error, uint64_t cookie);
// A structured chunk header; the payload of payload_length bytes follows.
void append_chunk_header(std::vector<uint8_t>& out, uint16_t flags, uint16_t type, uint64_t cookie,
                         uint32_t payload_length);
void append_error_chunk(std::vector<uint8_t>& out, uint64_t cookie, uint32_t error,
                        std::string_view message);

}  // namespace vireo::storage::nbd
