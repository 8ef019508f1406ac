#pragma once
// TarStream (internal): a tar reader over a possibly compressed byte source. Two libarchive
// readers are chained: the outer one only decompresses (filters gzip/zstd detected by magic,
// "raw" format), the inner one reads tar from the outer one's output, which is hashed on the way
// (the layer's diff_id). finish() reads what is left so that the diff_id covers the whole
// stream and the source reaches its end (a BlobReader verifies the blob there).
#include <archive.h>
#include <archive_entry.h>

#include <memory>
#include <optional>
#include <vector>

#include "image/layer_unpack.h"

namespace vireo::image {

class TarStream {
 public:
  TarStream() = default;
  ~TarStream();
  TarStream(const TarStream&) = delete;
  TarStream& operator=(const TarStream&) = delete;

  [[nodiscard]] Result<void> open(const ReadFn& source);
  // The next entry, or nullptr at the end of the archive.
  [[nodiscard]] Result<archive_entry*> next();
  archive* reader() { return tar_; }
  // An error of the tar reader, with the source's error when that was the cause.
  Error error(std::string_view what);
  [[nodiscard]] Result<Digest> finish();
  uint64_t size() const { return size_; }
  // Whether the decompressed stream has ended (the tar reader may still hold buffered data).
  bool stream_ended() const { return raw_eof_; }

 private:
  static la_ssize_t read_source(archive*, void* self, const void** buf);
  static la_ssize_t read_decompressed(archive*, void* self, const void** buf);

  const ReadFn* source_ = nullptr;
  archive* raw_ = nullptr;
  archive* tar_ = nullptr;
  std::vector<char> in_buf_ = std::vector<char>(1 << 16);
  std::vector<char> out_buf_ = std::vector<char>(1 << 16);
  std::optional<Error> source_error_;
  Hasher hasher_;
  uint64_t size_ = 0;
  bool raw_eof_ = false;
};

}  // namespace vireo::image
