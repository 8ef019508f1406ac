// One NBD client connection: handshake (with NBD_OPT_STARTTLS on TLS listeners), then the
// transmission loop.
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstring>
#include <memory>

#include "base/log.h"
#include "storage/io.h"
#include "storage/nbd/protocol.h"
#include "storage/nbd/server.h"
#include "storage/nbd/transport.h"

namespace vireo::storage::nbd {

class NbdSession {
 public:
  // tls: the listener's TLS context, which makes TLS required; null for a plain listener.
  NbdSession(NbdServer& server, int fd, const TlsContext* tls)
      : server_(server), tls_(tls), io_(fd), rbuf_(kReadBuffer) {}
  void run();

 private:
  static constexpr size_t kReadBuffer = 256 << 10;
  enum class Next { kContinue, kTransmission, kClose };

  Result<bool> handshake();
  Result<Next> handle_option(uint32_t option, std::span<const uint8_t> data);
  Result<Next> handle_starttls(uint32_t option, std::span<const uint8_t> data);
  Result<Next> handle_go(uint32_t option, std::span<const uint8_t> data);
  Result<Next> handle_meta_context(uint32_t option, std::span<const uint8_t> data);
  Result<void> transmission();
  Result<bool> handle(const Request& r);  // false: the client asked to disconnect
  Result<void> reply(const Request& r, uint32_t error, std::string_view message = {});
  Result<void> reply_read(const Request& r);
  Result<void> reply_block_status(const Request& r);
  void enter_transmission(std::shared_ptr<const ExportConfig> e);

  Result<void> recv_exact(void* dst, size_t n);
  Result<void> send(std::initializer_list<std::span<const uint8_t>> parts);
  Result<void> flush_replies();
  Result<void> option_reply(uint32_t option, uint32_t type, std::span<const uint8_t> data = {});
  Result<void> option_error(uint32_t option, uint32_t type, std::string_view message);
  uint8_t* payload(size_t n);

  NbdServer& server_;
  const TlsContext* tls_;
  Transport io_;
  std::vector<uint8_t> rbuf_;
  size_t rpos_ = 0, rlen_ = 0;
  std::unique_ptr<uint8_t[]> payload_;
  size_t payload_cap_ = 0;
  std::vector<uint8_t> out_;
  // Replies to pipelined requests are gathered here and sent with one sendmsg once no further
  // request is buffered, which saves a system call per request under load.
  std::vector<uint8_t> pending_;
  std::shared_ptr<const ExportConfig> export_;
  Session session_;
  bool no_zeroes_ = false;
  bool told_tls_required_ = false;  // logged once per connection
};

void serve_connection(NbdServer& server, int fd, const TlsContext* tls) {
  NbdSession(server, fd, tls).run();
}

namespace {

uint32_t nbd_errno(const Error& e) {
  switch (e.code()) {
    case ErrorCode::kInvalidArgument:
      return kEinval;
    case ErrorCode::kPermissionDenied:
      return kEperm;
    case ErrorCode::kTooLarge:
      return kEnospc;
    case ErrorCode::kUnavailable:
      return kEnotsup;
    default:
      return e.sys_errno() == ENOSPC ? kEnospc : kEio;
  }
}

uint16_t transmission_flags(const Session& s) {
  uint16_t f = kTxHasFlags | kTxSendFlush | kTxSendFua | kTxSendDf | kTxCanMultiConn;
  if (s.read_only) return f | kTxReadOnly;
  return f | kTxSendTrim | kTxSendWriteZeroes | kTxSendFastZero;
}

}  // namespace

void NbdSession::run() {
  Result<void> r = [&]() -> Result<void> {
    if (!TRY(handshake())) return {};
    return transmission();
  }();
  if (!r) {
    spdlog::info("nbd: connection closed: {}", r.error().message());
    return;
  }
  io_.close();
}

uint8_t* NbdSession::payload(size_t n) {
  if (n > payload_cap_) {
    payload_.reset(new uint8_t[n]);  // uninitialised: it is always filled before use
    payload_cap_ = n;
  }
  return payload_.get();
}

Result<void> NbdSession::recv_exact(void* dst, size_t n) {
  auto* out = static_cast<uint8_t*>(dst);
  while (n > 0) {
    if (rpos_ < rlen_) {
      size_t take = std::min(n, rlen_ - rpos_);
      std::memcpy(out, rbuf_.data() + rpos_, take);
      rpos_ += take;
      out += take;
      n -= take;
      continue;
    }
    // Large payloads go straight to their destination; small reads refill the buffer so that
    // pipelined request headers cost one recv for many.
    bool direct = n >= rbuf_.size() / 2;
    size_t got = TRY(io_.read_some(direct ? out : rbuf_.data(), direct ? n : rbuf_.size()));
    if (got == 0) return make_error(ErrorCode::kIo, "client disconnected");
    if (direct) {
      out += got;
      n -= got;
    } else {
      rpos_ = 0;
      rlen_ = got;
    }
  }
  return {};
}

Result<void> NbdSession::send(std::initializer_list<std::span<const uint8_t>> parts) {
  iovec iov[4];
  size_t count = 0;
  for (auto p : parts)
    if (!p.empty()) iov[count++] = {const_cast<uint8_t*>(p.data()), p.size()};
  return io_.write(iov, count);
}

Result<void> NbdSession::option_reply(uint32_t option, uint32_t type,
                                      std::span<const uint8_t> data) {
  out_.clear();
  append_option_reply(out_, option, type, data);
  return send({out_});
}

Result<void> NbdSession::option_error(uint32_t option, uint32_t type, std::string_view message) {
  return option_reply(option, type,
                      {reinterpret_cast<const uint8_t*>(message.data()), message.size()});
}

Result<bool> NbdSession::handshake() {
  uint8_t hello[18];
  store_be64(hello, kInitMagic);
  store_be64(hello + 8, kOptMagic);
  store_be16(hello + 16, kFlagFixedNewstyle | kFlagNoZeroes);
  TRY(send({hello}));
  uint8_t flags_raw[4];
  TRY(recv_exact(flags_raw, 4));
  uint32_t flags = load_be32(flags_raw);
  if (flags & ~uint32_t(kFlagFixedNewstyle | kFlagNoZeroes))
    return make_error(ErrorCode::kInvalidArgument, "unknown client flags {:#x}", flags);
  no_zeroes_ = flags & kFlagNoZeroes;
  std::vector<uint8_t> data;
  while (true) {
    uint8_t head[16];
    TRY(recv_exact(head, sizeof head));
    if (load_be64(head) != kOptMagic)
      return make_error(ErrorCode::kInvalidArgument, "bad option magic");
    uint32_t option = load_be32(head + 8), length = load_be32(head + 12);
    if (length > kMaxOptionLength)
      return make_error(ErrorCode::kTooLarge, "option {} of {} bytes is too large", option, length);
    data.resize(length);
    TRY(recv_exact(data.data(), length));
    Next next = TRY(handle_option(option, data));
    if (next == Next::kTransmission) return true;
    if (next == Next::kClose) return false;
  }
}

Result<NbdSession::Next> NbdSession::handle_option(uint32_t option, std::span<const uint8_t> data) {
  // A TLS listener requires TLS before anything else (FORCEDTLS): the options a client sends in
  // clear text are refused, and EXPORT_NAME, which cannot be refused, ends the connection.
  if (tls_ && !io_.secure() && option != kOptStartTls && option != kOptAbort) {
    if (option == kOptExportName)
      return make_error(ErrorCode::kPermissionDenied, "NBD_OPT_EXPORT_NAME before STARTTLS");
    if (!told_tls_required_)
      spdlog::info("nbd: client without TLS on a TLS listener: option {} refused", option);
    told_tls_required_ = true;
    TRY(option_error(option, kRepErrTlsReqd, "TLS is required: send NBD_OPT_STARTTLS first"));
    return Next::kContinue;
  }
  switch (option) {
    case kOptExportName: {
      std::string name(reinterpret_cast<const char*>(data.data()), data.size());
      auto e = server_.find_export(name);
      // This old option has no way to refuse: the connection ends.
      if (!e) return make_error(ErrorCode::kNotFound, "no export {}", name);
      enter_transmission(std::move(e));
      uint8_t reply[10 + 124] = {};
      store_be64(reply, session_.export_size);
      store_be16(reply + 8, transmission_flags(session_));
      TRY(send({std::span<const uint8_t>(reply, no_zeroes_ ? 10 : sizeof reply)}));
      return Next::kTransmission;
    }
    case kOptAbort:
      (void)option_reply(option, kRepAck);
      return Next::kClose;
    case kOptList: {
      if (!data.empty()) {
        TRY(option_reply(option, kRepErrInvalid));
        return Next::kContinue;
      }
      for (const std::string& name : server_.export_names()) {
        std::vector<uint8_t> d(4 + name.size());
        store_be32(d.data(), uint32_t(name.size()));
        std::memcpy(d.data() + 4, name.data(), name.size());
        TRY(option_reply(option, kRepServer, d));
      }
      TRY(option_reply(option, kRepAck));
      return Next::kContinue;
    }
    case kOptInfo:
    case kOptGo:
      return handle_go(option, data);
    case kOptStructuredReply:
      TRY(option_reply(option, data.empty() ? kRepAck : kRepErrInvalid));
      if (data.empty()) session_.structured = true;
      return Next::kContinue;
    case kOptListMetaContext:
    case kOptSetMetaContext:
      return handle_meta_context(option, data);
    case kOptStartTls:
      return handle_starttls(option, data);
    default:
      TRY(option_reply(option, kRepErrUnsup));
      return Next::kContinue;
  }
}

Result<NbdSession::Next> NbdSession::handle_starttls(uint32_t option,
                                                     std::span<const uint8_t> data) {
  if (!tls_) {
    TRY(option_reply(option, kRepErrUnsup));
    return Next::kContinue;
  }
  if (io_.secure() || !data.empty()) {
    TRY(option_error(option, kRepErrInvalid, io_.secure() ? "TLS is already on" : "data given"));
    return Next::kContinue;
  }
  TRY(option_reply(option, kRepAck));
  // A client waits for the ACK before its TLS hello; bytes that came before it would be clear
  // text slipped in front of the TLS session (the STARTTLS injection attack).
  if (rpos_ != rlen_)
    return make_error(ErrorCode::kInvalidArgument, "data after NBD_OPT_STARTTLS before TLS");
  io_.start_tls(TRY(TlsStream::accept(*tls_, io_.fd())));
  // Nothing negotiated in clear text carries over into the TLS session.
  session_ = Session{};
  return Next::kContinue;
}

void NbdSession::enter_transmission(std::shared_ptr<const ExportConfig> e) {
  export_ = std::move(e);
  session_.export_size = export_->device->size();
  session_.read_only = export_->read_only || export_->device->read_only();
}

Result<NbdSession::Next> NbdSession::handle_go(uint32_t option, std::span<const uint8_t> data) {
  auto go = parse_go(data);
  if (!go) {
    TRY(option_reply(option, kRepErrInvalid));
    return Next::kContinue;
  }
  auto e = server_.find_export(go->name);
  if (!e) {
    TRY(option_reply(option, kRepErrUnknown));
    return Next::kContinue;
  }
  Session s = session_;
  s.export_size = e->device->size();
  s.read_only = e->read_only || e->device->read_only();
  uint8_t info[12];
  store_be16(info, kInfoExport);
  store_be64(info + 2, s.export_size);
  store_be16(info + 10, transmission_flags(s));
  TRY(option_reply(option, kRepInfo, info));
  uint8_t sizes[14];
  store_be16(sizes, kInfoBlockSize);
  store_be32(sizes + 2, 1);
  store_be32(sizes + 6, 4096);
  store_be32(sizes + 10, kMaxPayload);
  TRY(option_reply(option, kRepInfo, sizes));
  for (uint16_t want : go->infos) {
    const std::string& text = want == kInfoName ? e->name : e->description;
    if ((want != kInfoName && want != kInfoDescription) || text.empty()) continue;
    std::vector<uint8_t> d(2 + text.size());
    store_be16(d.data(), want);
    std::memcpy(d.data() + 2, text.data(), text.size());
    TRY(option_reply(option, kRepInfo, d));
  }
  TRY(option_reply(option, kRepAck));
  if (option == kOptInfo) return Next::kContinue;
  enter_transmission(std::move(e));
  return Next::kTransmission;
}

Result<NbdSession::Next> NbdSession::handle_meta_context(uint32_t option,
                                                         std::span<const uint8_t> data) {
  auto req = parse_meta_context(data);
  if (!req || (option == kOptSetMetaContext && !session_.structured)) {
    TRY(option_reply(option, kRepErrInvalid));
    return Next::kContinue;
  }
  if (!server_.find_export(req->export_name)) {
    TRY(option_reply(option, kRepErrUnknown));
    return Next::kContinue;
  }
  bool list = option == kOptListMetaContext;
  bool match = list && req->queries.empty();
  for (const std::string& q : req->queries)
    match |= q == kBaseAllocation || (list && (q == "base:" || q.empty()));
  if (!list) session_.base_allocation = match;
  if (match) {
    std::string name = kBaseAllocation;
    std::vector<uint8_t> d(4 + name.size());
    store_be32(d.data(), kBaseAllocationId);
    std::memcpy(d.data() + 4, name.data(), name.size());
    TRY(option_reply(option, kRepMetaContext, d));
  }
  TRY(option_reply(option, kRepAck));
  return Next::kContinue;
}

Result<void> NbdSession::flush_replies() {
  if (pending_.empty()) return {};
  TRY(send({pending_}));
  pending_.clear();
  return {};
}

Result<void> NbdSession::transmission() {
  constexpr size_t kMaxPending = 256 << 10;
  while (true) {
    if ((rpos_ == rlen_ && !io_.buffered()) || pending_.size() >= kMaxPending) TRY(flush_replies());
    uint8_t head[kRequestSize];
    TRY(recv_exact(head, sizeof head));
    Request r = TRY(parse_request(std::span<const uint8_t, kRequestSize>(head)));
    if (r.type == kCmdWrite) {
      // The payload must be consumed to stay in step; one larger than we serve cannot be.
      if (r.length > kMaxPayload)
        return make_error(ErrorCode::kTooLarge, "write of {} bytes is too large", r.length);
      TRY(recv_exact(payload(r.length), r.length));
    }
    if (uint32_t err = validate_request(r, session_)) {
      TRY(reply(r, err, "invalid request"));
      if (r.type == kCmdDisc) return flush_replies();
      continue;
    }
    if (!TRY(handle(r))) return flush_replies();
  }
}

Result<bool> NbdSession::handle(const Request& r) {
  BlockDevice& dev = *export_->device;
  Result<void> done;
  switch (r.type) {
    case kCmdRead:
      TRY(reply_read(r));
      return true;
    case kCmdBlockStatus:
      TRY(reply_block_status(r));
      return true;
    case kCmdDisc:
      return false;
    case kCmdWrite:
      done = dev.write(std::span<const uint8_t>(payload_.get(), r.length), r.offset);
      break;
    case kCmdFlush:
      done = dev.flush();
      break;
    case kCmdTrim:
      done = dev.trim(r.length, r.offset);
      break;
    case kCmdWriteZeroes:
      done =
          dev.write_zeroes(r.length, r.offset,
                           r.flags & kCmdFlagNoHole ? ZeroMode::kKeepAllocated : ZeroMode::kMayTrim,
                           r.flags & kCmdFlagFastZero ? ZeroSpeed::kFastOnly : ZeroSpeed::kAny);
      break;
  }
  if (done && (r.flags & kCmdFlagFua)) done = dev.flush();
  if (!done) {
    // Fast-zero refusals are part of the protocol, not failures worth a log line.
    if (done.error().code() != ErrorCode::kUnavailable)
      spdlog::warn("nbd: {}: {}", export_->name, done.error().message());
    TRY(reply(r, nbd_errno(done.error()), done.error().message()));
    return true;
  }
  TRY(reply(r, 0));
  return true;
}

Result<void> NbdSession::reply(const Request& r, uint32_t error, std::string_view message) {
  bool chunked = session_.structured && (r.type == kCmdRead || r.type == kCmdBlockStatus);
  if (chunked && error)
    append_error_chunk(pending_, r.cookie, error, message);
  else if (chunked)
    append_chunk_header(pending_, kReplyFlagDone, kReplyNone, r.cookie, 0);
  else
    append_simple_reply(pending_, error, r.cookie);
  return {};
}

Result<void> NbdSession::reply_read(const Request& r) {
  // Small reads land right behind their reply header in the pending buffer; large ones are
  // sent from the payload buffer with the header in the same sendmsg.
  constexpr uint32_t kInline = 128 << 10;
  size_t mark = pending_.size();
  if (session_.structured) {
    append_chunk_header(pending_, kReplyFlagDone, kReplyOffsetData, r.cookie, 8 + r.length);
    pending_.resize(pending_.size() + 8);
    store_be64(&pending_[pending_.size() - 8], r.offset);
  } else {
    append_simple_reply(pending_, 0, r.cookie);
  }
  uint8_t* data;
  if (r.length <= kInline) {
    pending_.resize(pending_.size() + r.length);
    data = pending_.data() + pending_.size() - r.length;
  } else {
    data = payload(r.length);
  }
  auto read = export_->device->read(std::span(data, r.length), r.offset);
  if (!read) {
    pending_.resize(mark);
    spdlog::warn("nbd: {}: {}", export_->name, read.error().message());
    return reply(r, nbd_errno(read.error()), read.error().message());
  }
  if (r.length <= kInline) return {};
  TRY(send({pending_, std::span<const uint8_t>(data, r.length)}));
  pending_.clear();
  return {};
}

Result<void> NbdSession::reply_block_status(const Request& r) {
  auto extents = export_->device->block_status(r.length, r.offset);
  if (!extents) return reply(r, nbd_errno(extents.error()), extents.error().message());
  std::vector<uint8_t> body(4);
  store_be32(body.data(), kBaseAllocationId);
  uint64_t covered = 0;
  for (const Extent& e : *extents) {
    uint64_t len = std::min<uint64_t>(e.length, r.length - covered);
    if (len == 0) break;
    body.resize(body.size() + 8);
    store_be32(&body[body.size() - 8], uint32_t(len));
    store_be32(&body[body.size() - 4], e.flags);
    covered += len;
    if (covered == r.length || (r.flags & kCmdFlagReqOne)) break;
  }
  if (body.size() == 4) return reply(r, kEio, "no extents");
  append_chunk_header(pending_, kReplyFlagDone, kReplyBlockStatus, r.cookie, uint32_t(body.size()));
  pending_.insert(pending_.end(), body.begin(), body.end());
  return {};
}

}  // namespace vireo::storage::nbd
