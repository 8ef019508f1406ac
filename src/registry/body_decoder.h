#pragma once
// BodyDecoder: reads one request body (Content-Length or chunked transfer coding) from a Stream
// straight into the caller's buffer: one large recv per call, chunk framing removed in place.
// Beast's own body reading goes through its 64 KiB flat buffer with a copy per byte, and on a
// virtualized host each system call costs more than the copy. Used by one connection thread.
#include <cstdint>
#include <optional>
#include <string>

#include "registry/errors.h"
#include "registry/stream.h"

namespace vireo::registry {

class BodyDecoder {
 public:
  // leftover: bytes already read past the request header.
  BodyDecoder(Stream& stream, std::string leftover, std::optional<uint64_t> length, bool chunked);

  // Up to cap body bytes; 0 at the end of the body.
  RegResult<size_t> read(char* buf, size_t cap);
  bool done() const { return state_ == State::kDone; }
  bool failed() const { return failed_; }
  // Bytes read past the end of the body (the start of a pipelined request).
  std::string take_leftover() { return std::move(pending_); }

 private:
  enum class State { kLength, kSizeLine, kData, kDataEnd, kTrailer, kDone };
  RegResult<size_t> read_raw(char* buf, size_t cap, bool wait_all);
  // Removes chunk framing from buf[0, raw) in place; returns the data bytes left at the front.
  RegResult<size_t> decode(char* buf, size_t raw);
  RegResult<void> end_line(bool trailer);
  RegResult<size_t> fail(std::string detail);

  Stream& stream_;
  std::string pending_;
  State state_;
  uint64_t remaining_ = 0;  // of the body (kLength) or of the current chunk (kData)
  std::string line_;
  bool failed_ = false;
};

}  // namespace vireo::registry
