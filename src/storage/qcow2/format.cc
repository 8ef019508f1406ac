#include "storage/qcow2/format.h"

#include <algorithm>
#include <cstring>

#include "storage/io.h"

namespace vireo::storage::qcow2 {

namespace {

std::unexpected<Error> invalid(std::string message) {
  return make_error(ErrorCode::kInvalidArgument, "corrupt header: {}", message);
}

// True if [offset, offset+length) fits in a file of file_size bytes, without overflow.
bool fits(uint64_t offset, uint64_t length, uint64_t file_size) {
  return offset <= file_size && length <= file_size - offset;
}

struct Region {
  const char* what;
  uint64_t start, end;  // cluster-rounded byte range
};

Result<void> check_table(const char* what, uint64_t offset, uint64_t bytes, const Header& h,
                         uint64_t file_size) {
  if (offset % h.cluster_size() != 0)
    return invalid(fmt::format("{} offset {:#x} is not cluster aligned", what, offset));
  if (offset == 0 && bytes > 0) return invalid(fmt::format("{} overlaps the header", what));
  if (!fits(offset, bytes, file_size))
    return invalid(fmt::format("{} at {:#x} ({:#x} bytes) is beyond the end of the file", what,
                               offset, bytes));
  return {};
}

Result<void> check_overlaps(const std::vector<Region>& regions) {
  for (size_t i = 0; i < regions.size(); ++i)
    for (size_t j = i + 1; j < regions.size(); ++j) {
      const Region& a = regions[i];
      const Region& b = regions[j];
      if (a.start < a.end && b.start < b.end && a.start < b.end && b.start < a.end)
        return invalid(fmt::format("{} overlaps {}", a.what, b.what));
    }
  return {};
}

uint64_t round_up(uint64_t v, uint64_t to) {
  return (v + to - 1) / to * to;
}

Result<void> parse_fixed_v3(std::span<const uint8_t> d, Header& h) {
  if (d.size() < kV3HeaderLength) return invalid("truncated version 3 header");
  h.incompatible_features = load_be64(&d[72]);
  h.compatible_features = load_be64(&d[80]);
  h.autoclear_features = load_be64(&d[88]);
  h.refcount_order = load_be32(&d[96]);
  h.header_length = load_be32(&d[100]);
  if (h.header_length < kV3HeaderLength || h.header_length > d.size() ||
      h.header_length > h.cluster_size() || h.header_length % 8 != 0)
    return invalid(fmt::format("header length {}", h.header_length));
  if (h.refcount_order > 6) return invalid(fmt::format("refcount order {}", h.refcount_order));
  if (h.header_length > kV3HeaderLength) h.compression_type = d[104];
  uint64_t unknown = h.incompatible_features & ~kIncompatSupported;
  if (h.incompatible_features & kIncompatExternalData)
    return make_error(ErrorCode::kInvalidArgument, "external data files are not supported");
  if (h.incompatible_features & kIncompatExtendedL2)
    return make_error(ErrorCode::kInvalidArgument, "extended L2 entries are not supported");
  if (unknown)
    return make_error(ErrorCode::kInvalidArgument, "unsupported incompatible features {:#x}",
                      unknown);
  if (h.compression_type != 0)
    return make_error(ErrorCode::kInvalidArgument, "compression type {} is not supported",
                      h.compression_type);
  return {};
}

Result<void> parse_extensions(std::span<const uint8_t> d, Header& h) {
  size_t pos = h.header_length;
  size_t limit = std::min<size_t>(d.size(), h.cluster_size());
  while (true) {
    if (pos + 8 > limit) return invalid("header extensions run past the first cluster");
    uint32_t type = load_be32(&d[pos]);
    uint32_t length = load_be32(&d[pos + 4]);
    pos += 8;
    if (type == kExtEnd) return {};
    if (length > limit - pos) return invalid(fmt::format("header extension {:#x} length", type));
    if (type == kExtBackingFormat) {
      if (length > kMaxBackingNameLength) return invalid("backing format name too long");
      h.backing_format.assign(reinterpret_cast<const char*>(&d[pos]), length);
    }
    if (type == kExtEncryption) return invalid("encryption header present");
    pos += round_up(length, 8);
  }
}

Result<void> parse_backing_name(std::span<const uint8_t> d, Header& h) {
  if (h.backing_file_offset == 0 && h.backing_file_size == 0) return {};
  if (h.backing_file_size == 0 || h.backing_file_size > kMaxBackingNameLength)
    return invalid(fmt::format("backing file name length {}", h.backing_file_size));
  uint64_t limit = std::min<uint64_t>(d.size(), h.cluster_size());
  if (h.backing_file_offset < h.header_length ||
      !fits(h.backing_file_offset, h.backing_file_size, limit))
    return invalid(fmt::format("backing file name at {:#x}", h.backing_file_offset));
  h.backing_file.assign(reinterpret_cast<const char*>(&d[h.backing_file_offset]),
                        h.backing_file_size);
  if (h.backing_file.find('\0') != std::string::npos) return invalid("NUL in backing file name");
  return {};
}

Result<void> check_tables(const Header& h, uint64_t file_size) {
  uint64_t cs = h.cluster_size();
  if (h.size > kMaxVirtualSize) return invalid(fmt::format("virtual size {:#x}", h.size));
  if (uint64_t(h.l1_size) * 8 > kMaxL1Bytes) return invalid(fmt::format("L1 size {}", h.l1_size));
  if (h.l1_size < l1_entries_for(h.size, h.cluster_bits))
    return invalid(fmt::format("L1 size {} too small for virtual size {:#x}", h.l1_size, h.size));
  TRY(check_table("L1 table", h.l1_table_offset, uint64_t(h.l1_size) * 8, h, file_size));
  if (h.refcount_table_clusters == 0 ||
      uint64_t(h.refcount_table_clusters) > kMaxRefcountTableBytes / cs)
    return invalid(fmt::format("refcount table clusters {}", h.refcount_table_clusters));
  uint64_t rt_bytes = uint64_t(h.refcount_table_clusters) * cs;
  TRY(check_table("refcount table", h.refcount_table_offset, rt_bytes, h, file_size));
  if (h.nb_snapshots > kMaxSnapshots) return invalid(fmt::format("{} snapshots", h.nb_snapshots));
  std::vector<Region> regions = {
      {"header", 0, cs},
      {"L1 table", h.l1_table_offset, h.l1_table_offset + round_up(uint64_t(h.l1_size) * 8, cs)},
      {"refcount table", h.refcount_table_offset, h.refcount_table_offset + rt_bytes}};
  if (h.nb_snapshots > 0) {
    TRY(check_table("snapshot table", h.snapshots_offset, 40, h, file_size));
    regions.push_back({"snapshot table", h.snapshots_offset, h.snapshots_offset + cs});
  }
  return check_overlaps(regions);
}

}  // namespace

uint64_t l1_entries_for(uint64_t size, uint32_t cluster_bits) {
  uint64_t per_l1 = (1ull << cluster_bits) / 8 << cluster_bits;  // bytes mapped by one L2 table
  return (size + per_l1 - 1) / per_l1;
}

Result<Header> parse_header(std::span<const uint8_t> d, uint64_t file_size) {
  if (d.size() < kV2HeaderLength) return invalid("file too small for a qcow2 header");
  if (load_be32(&d[0]) != kMagic)
    return make_error(ErrorCode::kInvalidArgument, "not a qcow2 image (bad magic)");
  Header h;
  h.version = load_be32(&d[4]);
  if (h.version != 2 && h.version != 3)
    return make_error(ErrorCode::kInvalidArgument, "unsupported qcow2 version {}", h.version);
  h.backing_file_offset = load_be64(&d[8]);
  h.backing_file_size = load_be32(&d[16]);
  h.cluster_bits = load_be32(&d[20]);
  h.size = load_be64(&d[24]);
  uint32_t crypt_method = load_be32(&d[32]);
  h.l1_size = load_be32(&d[36]);
  h.l1_table_offset = load_be64(&d[40]);
  h.refcount_table_offset = load_be64(&d[48]);
  h.refcount_table_clusters = load_be32(&d[56]);
  h.nb_snapshots = load_be32(&d[60]);
  h.snapshots_offset = load_be64(&d[64]);
  if (h.cluster_bits < kMinClusterBits || h.cluster_bits > kMaxClusterBits)
    return invalid(fmt::format("cluster bits {}", h.cluster_bits));
  if (crypt_method != 0)
    return make_error(ErrorCode::kInvalidArgument, "encrypted images are not supported");
  if (h.version == 3) {
    TRY(parse_fixed_v3(d, h));
  } else {
    h.refcount_order = 4;
    h.header_length = kV2HeaderLength;
  }
  TRY(check_tables(h, file_size));
  TRY(parse_extensions(d, h));
  TRY(parse_backing_name(d, h));
  return h;
}

std::vector<uint8_t> serialize_fixed_header(const Header& h) {
  std::vector<uint8_t> d(h.header_length, 0);
  store_be32(&d[0], kMagic);
  store_be32(&d[4], h.version);
  store_be64(&d[8], h.backing_file_offset);
  store_be32(&d[16], h.backing_file_size);
  store_be32(&d[20], h.cluster_bits);
  store_be64(&d[24], h.size);
  store_be32(&d[36], h.l1_size);
  store_be64(&d[40], h.l1_table_offset);
  store_be64(&d[48], h.refcount_table_offset);
  store_be32(&d[56], h.refcount_table_clusters);
  store_be32(&d[60], h.nb_snapshots);
  store_be64(&d[64], h.snapshots_offset);
  if (h.version >= 3) {
    store_be64(&d[72], h.incompatible_features);
    store_be64(&d[80], h.compatible_features);
    store_be64(&d[88], h.autoclear_features);
    store_be32(&d[96], h.refcount_order);
    store_be32(&d[100], h.header_length);
    if (h.header_length > kV3HeaderLength) d[104] = h.compression_type;
  }
  return d;
}

Result<std::vector<uint8_t>> serialize_header(const Header& in) {
  Header h = in;
  std::vector<uint8_t> ext;
  auto add_ext = [&](uint32_t type, std::string_view data) {
    size_t at = ext.size();
    ext.resize(at + 8 + round_up(data.size(), 8), 0);
    store_be32(&ext[at], type);
    store_be32(&ext[at + 4], uint32_t(data.size()));
    if (!data.empty()) std::memcpy(&ext[at + 8], data.data(), data.size());
  };
  if (!h.backing_format.empty()) add_ext(kExtBackingFormat, h.backing_format);
  add_ext(kExtEnd, {});
  h.backing_file_size = uint32_t(h.backing_file.size());
  h.backing_file_offset = h.backing_file.empty() ? 0 : h.header_length + ext.size();
  if (h.header_length + ext.size() + h.backing_file.size() > h.cluster_size() ||
      h.backing_file.size() > kMaxBackingNameLength)
    return make_error(ErrorCode::kInvalidArgument, "backing file name too long");
  std::vector<uint8_t> d = serialize_fixed_header(h);
  d.insert(d.end(), ext.begin(), ext.end());
  d.insert(d.end(), h.backing_file.begin(), h.backing_file.end());
  d.resize(h.cluster_size(), 0);
  return d;
}

Result<std::vector<SnapshotInfo>> parse_snapshot_table(std::span<const uint8_t> d, const Header& h,
                                                       uint64_t file_size, uint64_t* table_bytes) {
  std::vector<SnapshotInfo> out;
  size_t pos = 0;
  for (uint32_t i = 0; i < h.nb_snapshots; ++i) {
    if (d.size() - pos < 40) return invalid(fmt::format("snapshot {} is truncated", i));
    const uint8_t* e = &d[pos];
    SnapshotInfo s;
    s.l1_table_offset = load_be64(e);
    s.l1_size = load_be32(e + 8);
    uint16_t id_size = load_be16(e + 12);
    uint16_t name_size = load_be16(e + 14);
    s.date_sec = load_be32(e + 16);
    s.vm_state_size = load_be32(e + 32);
    uint32_t extra_size = load_be32(e + 36);
    uint64_t total = 40ull + extra_size + id_size + name_size;
    if (total > d.size() - pos) return invalid(fmt::format("snapshot {} is truncated", i));
    const uint8_t* extra = e + 40;
    s.disk_size_stored = extra_size >= 16;
    s.disk_size = s.disk_size_stored ? load_be64(extra + 8) : h.size;
    if (extra_size >= 8) s.vm_state_size = load_be64(extra);
    s.id.assign(reinterpret_cast<const char*>(extra + extra_size), id_size);
    s.name.assign(reinterpret_cast<const char*>(extra + extra_size + id_size), name_size);
    if (uint64_t(s.l1_size) * 8 > kMaxL1Bytes || s.disk_size > kMaxVirtualSize ||
        s.l1_size < l1_entries_for(s.disk_size, h.cluster_bits))
      return invalid(fmt::format("snapshot {} L1 size {}", i, s.l1_size));
    TRY(check_table("snapshot L1 table", s.l1_table_offset, uint64_t(s.l1_size) * 8, h, file_size));
    out.push_back(std::move(s));
    pos += round_up(total, 8);
    if (pos > d.size()) pos = d.size();
  }
  if (table_bytes) *table_bytes = pos;
  return out;
}

ClusterMapping decode_l2_entry(uint64_t entry, const Header& h) {
  ClusterMapping m;
  if (entry & kFlagCompressed) {
    uint32_t shift = 62 - (h.cluster_bits - 8);
    uint64_t sectors_mask = (1ull << (h.cluster_bits - 8)) - 1;
    m.kind = ClusterMapping::Kind::kCompressed;
    m.host_offset = entry & ((1ull << shift) - 1);
    uint64_t sectors = ((entry >> shift) & sectors_mask) + 1;
    m.compressed_size = sectors * 512 - (m.host_offset & 511);
    return m;
  }
  m.host_offset = entry & kOffsetMask;
  m.copied = (entry & kFlagCopied) != 0;
  if (h.version >= 3 && (entry & kFlagZero))
    m.kind = ClusterMapping::Kind::kZero;
  else if (m.host_offset != 0)
    m.kind = ClusterMapping::Kind::kNormal;
  return m;
}

Result<void> validate_mapping(const ClusterMapping& m, const Header& h, uint64_t file_size) {
  using Kind = ClusterMapping::Kind;
  if (m.kind == Kind::kUnallocated || (m.kind == Kind::kZero && m.host_offset == 0)) return {};
  if (m.kind != Kind::kCompressed && m.host_offset % h.cluster_size() != 0)
    return make_error(ErrorCode::kInvalidArgument, "data cluster {:#x} is not cluster aligned",
                      m.host_offset);
  if (m.host_offset < h.cluster_size() || m.host_offset >= file_size)
    return make_error(ErrorCode::kInvalidArgument,
                      "data cluster {:#x} is outside the file ({:#x} bytes)", m.host_offset,
                      file_size);
  return {};
}

}  // namespace vireo::storage::qcow2
