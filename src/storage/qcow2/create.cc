// Creating an empty qcow2 image, laid out like qemu-img create: header, refcount table,
// refcount blocks, L1 table.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>

#include "storage/io.h"
#include "storage/qcow2/qcow2.h"

namespace vireo::storage {

using namespace qcow2;

namespace {

uint64_t div_up(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}

Result<void> validate(const Qcow2CreateOptions& o) {
  if (o.version != 2 && o.version != 3)
    return make_error(ErrorCode::kInvalidArgument, "qcow2 version must be 2 or 3");
  if (!std::has_single_bit(o.cluster_size) || o.cluster_size < (1u << kMinClusterBits) ||
      o.cluster_size > (1u << kMaxClusterBits))
    return make_error(ErrorCode::kInvalidArgument,
                      "cluster size must be a power of two between 512 B and 2 MiB");
  if (!std::has_single_bit(o.refcount_bits) || o.refcount_bits > 64)
    return make_error(ErrorCode::kInvalidArgument, "refcount bits must be a power of two <= 64");
  if (o.version == 2 && (o.refcount_bits != 16 || o.lazy_refcounts))
    return make_error(ErrorCode::kInvalidArgument,
                      "version 2 images have 16-bit refcounts and no lazy refcounts");
  if (o.size > kMaxVirtualSize)
    return make_error(ErrorCode::kInvalidArgument, "size {:#x} is too large", o.size);
  return {};
}

Result<uint64_t> backing_size(const std::filesystem::path& image, const Qcow2CreateOptions& o) {
  std::filesystem::path name = o.backing_file;
  if (name.is_relative()) name = image.parent_path() / name;
  Qcow2OpenOptions options;
  options.mode = OpenMode::kReadOnly;
  if (o.backing_format != "raw") {
    auto q = Qcow2::open(name, options);
    if (q) return (*q)->size();
    if (o.backing_format == "qcow2") return std::unexpected(std::move(q.error()));
  }
  auto raw = TRY(RawFile::open(name, OpenMode::kReadOnly));
  return raw->size();
}

}  // namespace

Result<void> Qcow2::create(const std::filesystem::path& path, const Qcow2CreateOptions& in) {
  std::string where = "create qcow2 " + path.string();
  Qcow2CreateOptions o = in;
  TRY_CTX(validate(o), "{}", where);
  if (o.size == 0 && !o.backing_file.empty())
    o.size = TRY_CTX(backing_size(path, o), "{}: backing file", where);
  o.size = div_up(o.size, 512) * 512;  // qemu-img rounds to whole sectors too
  Header h;
  h.version = o.version;
  h.cluster_bits = uint32_t(std::countr_zero(o.cluster_size));
  h.size = o.size;
  h.refcount_order = uint32_t(std::countr_zero(o.refcount_bits));
  h.header_length = o.version == 3 ? kV3HeaderLength : kV2HeaderLength;
  h.compatible_features = o.lazy_refcounts ? kCompatLazyRefcounts : 0;
  h.backing_file = o.backing_file;
  h.backing_format = o.backing_format;
  uint64_t cs = o.cluster_size;
  uint64_t per_block = h.refcount_block_entries();
  h.l1_size = uint32_t(l1_entries_for(o.size, h.cluster_bits));
  if (uint64_t(h.l1_size) * 8 > kMaxL1Bytes)
    return make_error(ErrorCode::kInvalidArgument, "{}: size too large for cluster size", where);
  uint64_t l1_clusters = div_up(uint64_t(h.l1_size) * 8, cs);
  // Size the refcount table for a fully allocated image twice over (snapshots, copy-on-write),
  // because this writer does not grow it.
  uint64_t full = div_up(o.size, cs) + h.l1_size + l1_clusters + 16;
  uint64_t rt_clusters = div_up(div_up(2 * full, per_block) * 8, cs);
  rt_clusters = std::clamp<uint64_t>(rt_clusters, 1, kMaxRefcountTableBytes / cs);
  uint64_t blocks = 1;
  while (div_up(1 + rt_clusters + blocks + l1_clusters, per_block) > blocks) ++blocks;
  uint64_t meta = 1 + rt_clusters + blocks + l1_clusters;
  if (blocks > rt_clusters * cs / 8)
    return make_error(ErrorCode::kInvalidArgument, "{}: size too large for cluster size", where);
  h.refcount_table_clusters = uint32_t(rt_clusters);
  h.refcount_table_offset = cs;
  h.l1_table_offset = (1 + rt_clusters + blocks) * cs;

  std::vector<uint8_t> image(meta * cs, 0);
  std::vector<uint8_t> header = TRY_CTX(serialize_header(h), "{}", where);
  std::copy(header.begin(), header.end(), image.begin());
  for (uint64_t b = 0; b < blocks; ++b) store_be64(&image[cs + b * 8], (1 + rt_clusters + b) * cs);
  uint8_t* refcounts = &image[(1 + rt_clusters) * cs];
  for (uint64_t c = 0; c < meta; ++c) {
    uint32_t bits = o.refcount_bits;
    if (bits >= 8) {
      uint64_t bytes = bits / 8;
      refcounts[c * bytes + bytes - 1] = 1;  // big-endian 1
    } else {
      uint64_t per_byte = 8 / bits;
      refcounts[c / per_byte] |= uint8_t(1u << (c % per_byte * bits));
    }
  }
  Fd fd(::open(path.c_str(), O_CLOEXEC | O_RDWR | O_CREAT | O_TRUNC, 0644));
  if (!fd) return errno_error(where);
  TRY_CTX(pwrite_full(fd.get(), image, 0), "{}", where);
  if (::fdatasync(fd.get()) != 0) return errno_error(where + ": sync");
  return {};
}

}  // namespace vireo::storage
