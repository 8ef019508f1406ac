#include "registry/body_decoder.h"

#include <charconv>
#include <cstring>

namespace vireo::registry {

BodyDecoder::BodyDecoder(Stream& stream, std::string leftover, std::optional<uint64_t> length,
                         bool chunked)
    : stream_(stream), pending_(std::move(leftover)) {
  if (chunked) {
    state_ = State::kSizeLine;
  } else {
    remaining_ = length.value_or(0);
    state_ = remaining_ ? State::kLength : State::kDone;
  }
}

RegResult<size_t> BodyDecoder::fail(std::string detail) {
  failed_ = true;
  state_ = State::kDone;
  return reg_error(Code::kBlobUploadInvalid, "request body incomplete or malformed",
                   std::move(detail));
}

RegResult<size_t> BodyDecoder::read_raw(char* buf, size_t cap, bool wait_all) {
  if (!pending_.empty()) {
    size_t n = std::min(cap, pending_.size());
    std::memcpy(buf, pending_.data(), n);
    pending_.erase(0, n);
    return n;
  }
  boost::system::error_code ec;
  size_t n = stream_.read(buf, cap, ec, wait_all);
  if (ec) return fail(ec.message());
  return n;
}

RegResult<size_t> BodyDecoder::read(char* buf, size_t cap) {
  while (state_ != State::kDone && cap > 0) {
    if (state_ == State::kLength) {
      size_t n = TRY(read_raw(buf, size_t(std::min<uint64_t>(cap, remaining_)), true));
      remaining_ -= n;
      if (remaining_ == 0) state_ = State::kDone;
      return n;
    }
    size_t raw = TRY(read_raw(buf, cap, false));
    size_t out = TRY(decode(buf, raw));
    if (out > 0) return out;
  }
  return size_t(0);
}

RegResult<void> BodyDecoder::end_line(bool trailer) {
  std::string_view line = line_;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (trailer) {
    if (line.empty()) state_ = State::kDone;
    line_.clear();
    return {};
  }
  line = line.substr(0, line.find(';'));
  uint64_t size = 0;
  auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
  if (line.empty() || ec != std::errc() || p != line.data() + line.size())
    return std::unexpected(RegistryError(Code::kBlobUploadInvalid, "bad chunk size"));
  line_.clear();
  remaining_ = size;
  state_ = size ? State::kData : State::kTrailer;
  return {};
}

RegResult<size_t> BodyDecoder::decode(char* buf, size_t raw) {
  size_t i = 0, out = 0;
  while (i < raw && state_ != State::kDone) {
    if (state_ == State::kData) {
      size_t take = size_t(std::min<uint64_t>(raw - i, remaining_));
      std::memmove(buf + out, buf + i, take);
      out += take, i += take, remaining_ -= take;
      if (remaining_ == 0) state_ = State::kDataEnd;
      continue;
    }
    char c = buf[i++];
    if (state_ == State::kDataEnd) {
      if (c == '\n')
        state_ = State::kSizeLine;
      else if (c != '\r')
        return fail("missing CRLF after chunk");
      continue;
    }
    if (c != '\n') {
      if (line_.size() > 4096) return fail("chunk line too long");
      line_ += c;
      continue;
    }
    if (auto r = end_line(state_ == State::kTrailer); !r) return fail(r.error().message());
  }
  if (state_ == State::kDone && i < raw) pending_.insert(0, buf + i, raw - i);
  return out;
}

}  // namespace vireo::registry
