#include "image/tar_stream.h"

namespace vireo::image {

namespace {

std::string archive_message(archive* a) {
  const char* s = a ? archive_error_string(a) : nullptr;
  return s ? s : "unknown archive error";
}

}  // namespace

TarStream::~TarStream() {
  if (tar_) archive_read_free(tar_);
  if (raw_) archive_read_free(raw_);
}

la_ssize_t TarStream::read_source(archive* a, void* self, const void** buf) {
  auto* s = static_cast<TarStream*>(self);
  auto n = (*s->source_)(s->in_buf_.data(), s->in_buf_.size());
  if (!n) {
    s->source_error_ = n.error();
    archive_set_error(a, EIO, "%s", n.error().message().c_str());
    return -1;
  }
  *buf = s->in_buf_.data();
  return static_cast<la_ssize_t>(*n);
}

la_ssize_t TarStream::read_decompressed(archive* a, void* self, const void** buf) {
  auto* s = static_cast<TarStream*>(self);
  if (s->raw_eof_) return 0;
  la_ssize_t n = archive_read_data(s->raw_, s->out_buf_.data(), s->out_buf_.size());
  if (n < 0) {
    archive_set_error(a, EIO, "%s", archive_message(s->raw_).c_str());
    return -1;
  }
  if (n == 0) s->raw_eof_ = true;
  s->hasher_.update(s->out_buf_.data(), static_cast<size_t>(n));
  s->size_ += static_cast<uint64_t>(n);
  *buf = s->out_buf_.data();
  return n;
}

Result<void> TarStream::open(const ReadFn& source) {
  source_ = &source;
  raw_ = archive_read_new();
  tar_ = archive_read_new();
  if (!raw_ || !tar_) return make_error(ErrorCode::kInternal, "archive_read_new failed");
  archive_read_support_filter_gzip(raw_);
  archive_read_support_filter_zstd(raw_);
  archive_read_support_format_raw(raw_);
  if (archive_read_open(raw_, this, nullptr, read_source, nullptr) != ARCHIVE_OK)
    return std::unexpected(error("open compressed stream"));
  archive_entry* e = nullptr;
  int r = archive_read_next_header(raw_, &e);
  if (r == ARCHIVE_EOF)
    raw_eof_ = true;
  else if (r != ARCHIVE_OK)
    return std::unexpected(error("read compressed stream"));
  archive_read_support_format_tar(tar_);
  archive_read_support_format_empty(tar_);
  if (archive_read_open(tar_, this, nullptr, read_decompressed, nullptr) != ARCHIVE_OK)
    return std::unexpected(error("not a tar archive"));
  return {};
}

Error TarStream::error(std::string_view what) {
  if (source_error_) return Error(*source_error_).with_context(what);
  archive* a = tar_ && archive_error_string(tar_) ? tar_ : raw_;
  std::string msg = archive_message(a);
  return Error(ErrorCode::kInvalidArgument, fmt::format("{}: {}", what, msg));
}

Result<archive_entry*> TarStream::next() {
  archive_entry* e = nullptr;
  int r = archive_read_next_header(tar_, &e);
  if (r == ARCHIVE_EOF) return nullptr;
  if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return std::unexpected(error("read tar"));
  return e;
}

Result<Digest> TarStream::finish() {
  const void* buf;
  for (;;) {
    la_ssize_t n = read_decompressed(tar_, this, &buf);
    if (n < 0) return std::unexpected(error("read tar"));
    if (n == 0) break;
  }
  // What follows the compressed stream, if anything, still belongs to the blob.
  for (;;) {
    auto n = (*source_)(in_buf_.data(), in_buf_.size());
    if (!n) return std::unexpected(n.error());
    if (*n == 0) break;
  }
  return hasher_.digest();
}

}  // namespace vireo::image
