// qcow2 metadata: the L2 table cache, refcounts and cluster allocation.
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "storage/io.h"
#include "storage/qcow2/qcow2.h"

namespace vireo::storage {

using namespace qcow2;

Result<std::vector<uint64_t>*> Qcow2::l2_table(uint64_t l2_offset) {
  auto it = l2_cache_.find(l2_offset);
  if (it != l2_cache_.end()) {
    it->second.last_use = ++use_clock_;
    return &it->second.entries;
  }
  if (l2_cache_.size() >= l2_cache_capacity_) {
    auto oldest = std::min_element(l2_cache_.begin(), l2_cache_.end(), [](auto& a, auto& b) {
      return a.second.last_use < b.second.last_use;
    });
    l2_cache_.erase(oldest);
  }
  std::vector<uint8_t> raw(cluster_size_);
  TRY_CTX(pread_full(fd_.get(), raw, l2_offset), "read L2 table at {:#x}", l2_offset);
  CachedTable t;
  t.entries.resize(cluster_size_ / 8);
  for (size_t i = 0; i < t.entries.size(); ++i) t.entries[i] = load_be64(&raw[i * 8]);
  t.last_use = ++use_clock_;
  return &l2_cache_.emplace(l2_offset, std::move(t)).first->second.entries;
}

Result<Qcow2::Mapping> Qcow2::lookup(uint64_t guest_cluster) {
  uint64_t l1_index = guest_cluster / h_.l2_entries();
  if (l1_index >= l1_.size()) return Mapping{};
  uint64_t l2_offset = l1_[l1_index] & kOffsetMask;
  if (l2_offset == 0) return Mapping{};
  uint64_t entry;
  {
    std::lock_guard lock(cache_mu_);
    std::vector<uint64_t>* table = TRY(l2_table(l2_offset));
    entry = (*table)[guest_cluster % h_.l2_entries()];
  }
  Mapping m = decode_l2_entry(entry, h_);
  if (auto ok = validate_mapping(m, h_, file_end_); !ok)
    return std::unexpected(std::move(ok.error())
                               .with_context(fmt::format("L2 entry of guest cluster {:#x}",
                                                         guest_cluster * cluster_size_)));
  return m;
}

Result<void> Qcow2::set_l2_entries(uint64_t l2_offset, uint64_t first,
                                   std::span<const uint64_t> entries) {
  std::vector<uint8_t> raw(entries.size() * 8);
  for (size_t i = 0; i < entries.size(); ++i) store_be64(&raw[i * 8], entries[i]);
  {
    std::lock_guard lock(cache_mu_);
    std::vector<uint64_t>* table = TRY(l2_table(l2_offset));
    std::copy(entries.begin(), entries.end(), table->begin() + ptrdiff_t(first));
  }
  return with_context(pwrite_full(fd_.get(), raw, l2_offset + first * 8), "write L2 table");
}

// Returns the offset of an L2 table for l1_index that this image alone owns, allocating a new
// one or copying a table shared with a snapshot.
Result<uint64_t> Qcow2::writable_l2(uint64_t l1_index) {
  uint64_t entry = l1_[l1_index];
  uint64_t old = entry & kOffsetMask;
  if (old != 0 && (entry & kFlagCopied)) return old;
  std::vector<uint8_t> raw(cluster_size_, 0);
  if (old != 0) TRY_CTX(pread_full(fd_.get(), raw, old), "read L2 table at {:#x}", old);
  uint64_t fresh = TRY(allocate_clusters(1));
  TRY_CTX(pwrite_full(fd_.get(), raw, fresh), "write L2 table");
  metadata_clusters_.insert(fresh / cluster_size_);
  uint8_t be[8];
  store_be64(be, fresh | kFlagCopied);
  TRY_CTX(pwrite_full(fd_.get(), be, l1_offset_ + l1_index * 8), "write L1 table");
  l1_[l1_index] = fresh | kFlagCopied;
  if (old != 0) {
    {
      std::lock_guard lock(cache_mu_);
      l2_cache_.erase(old);
    }
    TRY(decref_cluster(old / cluster_size_));
  }
  return fresh;
}

Result<std::vector<uint8_t>*> Qcow2::refcount_block(uint64_t table_index) {
  uint64_t offset = refcount_table_[table_index];
  if (offset == 0) return nullptr;
  auto it = refcount_blocks_.find(offset);
  if (it != refcount_blocks_.end()) return &it->second;
  std::vector<uint8_t> raw(cluster_size_);
  TRY_CTX(pread_full(fd_.get(), raw, offset), "read refcount block at {:#x}", offset);
  return &refcount_blocks_.emplace(offset, std::move(raw)).first->second;
}

namespace {

// Refcount entries narrower than a byte are packed from the least significant bit up.
uint64_t get_entry(const uint8_t* block, uint64_t index, uint32_t bits) {
  switch (bits) {
    case 64:
      return load_be64(block + index * 8);
    case 32:
      return load_be32(block + index * 4);
    case 16:
      return load_be16(block + index * 2);
    case 8:
      return block[index];
    default: {
      uint64_t per_byte = 8 / bits;
      return (block[index / per_byte] >> (index % per_byte * bits)) & ((1u << bits) - 1);
    }
  }
}

// Stores the entry; returns the byte range [first, first+len) of the block that changed.
std::pair<uint64_t, uint64_t> put_entry(uint8_t* block, uint64_t index, uint32_t bits,
                                        uint64_t value) {
  switch (bits) {
    case 64:
      store_be64(block + index * 8, value);
      return {index * 8, 8};
    case 32:
      store_be32(block + index * 4, uint32_t(value));
      return {index * 4, 4};
    case 16:
      store_be16(block + index * 2, uint16_t(value));
      return {index * 2, 2};
    case 8:
      block[index] = uint8_t(value);
      return {index, 1};
    default: {
      uint64_t per_byte = 8 / bits;
      uint32_t shift = uint32_t(index % per_byte * bits);
      uint8_t mask = uint8_t(((1u << bits) - 1) << shift);
      uint8_t& b = block[index / per_byte];
      b = uint8_t((b & ~mask) | ((value << shift) & mask));
      return {index / per_byte, 1};
    }
  }
}

}  // namespace

Result<uint64_t> Qcow2::refcount(uint64_t cluster) {
  uint64_t per_block = h_.refcount_block_entries();
  uint64_t t = cluster / per_block;
  if (t >= refcount_table_.size()) return 0;
  std::vector<uint8_t>* block = TRY(refcount_block(t));
  if (!block) return 0;
  return get_entry(block->data(), cluster % per_block, h_.refcount_bits());
}

Result<void> Qcow2::ensure_refcount_block(uint64_t cluster) {
  uint64_t per_block = h_.refcount_block_entries();
  uint64_t t = cluster / per_block;
  if (t >= refcount_table_.size()) TRY(grow_refcount_table(t));
  if (refcount_table_[t] != 0) return {};
  // The new block goes at the end of the file; it usually covers itself.
  uint64_t b = file_end_ / cluster_size_;
  file_end_ += cluster_size_;
  std::vector<uint8_t> zero(cluster_size_, 0);
  TRY_CTX(pwrite_full(fd_.get(), zero, b * cluster_size_), "write refcount block");
  uint8_t be[8];
  store_be64(be, b * cluster_size_);
  TRY_CTX(pwrite_full(fd_.get(), be, h_.refcount_table_offset + t * 8), "write refcount table");
  refcount_table_[t] = b * cluster_size_;
  refcount_blocks_.emplace(b * cluster_size_, std::move(zero));
  metadata_clusters_.insert(b);
  return set_refcount(b, 1);
}

// Grows the refcount table to have an entry for table_index, the way qemu does: the new table
// and the refcount blocks it needs for itself go at the end of the file and are refcounted in
// those blocks (self-describing). Order: blocks and table written and synced, then the header
// switched and synced, then the old table freed; a crash in between leaks clusters, it never
// leaves the header pointing at a table that misses a reference.
Result<void> Qcow2::grow_refcount_table(uint64_t table_index) {
  const uint64_t cs = cluster_size_;
  const uint64_t per_block = h_.refcount_block_entries();
  const uint64_t old_entries = refcount_table_.size();
  const uint64_t area = file_end_ / cs;  // first cluster of the new blocks and table
  auto has_block = [&](uint64_t t) { return t < old_entries && refcount_table_[t] != 0; };
  auto missing_blocks = [&](uint64_t end) {
    uint64_t n = 0;
    for (uint64_t t = area / per_block; end > area && t <= (end - 1) / per_block; ++t)
      n += !has_block(t);
    return n;
  };
  // The table must cover the area that holds it, and the area holds the blocks that cover it:
  // iterate to the fixed point (both counts only grow).
  uint64_t blocks = 0, rt_clusters = 0;
  for (;;) {
    uint64_t end = area + blocks + rt_clusters;
    uint64_t want = std::max(table_index + 1, (end + per_block - 1) / per_block);
    // Headroom, as qemu, so that a growing file does not move the table every time; none when
    // that would pass the size limit.
    uint64_t rt = (std::max(old_entries, want + want / 2) * 8 + cs - 1) / cs;
    if (rt * cs > kMaxRefcountTableBytes) rt = (std::max(old_entries, want) * 8 + cs - 1) / cs;
    rt = std::max(rt, rt_clusters);  // never shrinks between rounds, so the loop ends
    if (rt * cs > kMaxRefcountTableBytes)
      return make_error(ErrorCode::kTooLarge,
                        "refcount table would exceed {} MiB (cluster {:#x}); the image is too "
                        "large for its cluster size",
                        kMaxRefcountTableBytes >> 20, table_index * per_block * cs);
    uint64_t b = missing_blocks(end);
    if (b == blocks && rt == rt_clusters) break;
    blocks = b;
    rt_clusters = rt;
  }
  const uint64_t end = area + blocks + rt_clusters;
  const uint64_t table_at = (area + blocks) * cs;
  std::vector<uint64_t> table(rt_clusters * cs / 8, 0);
  std::copy(refcount_table_.begin(), refcount_table_.end(), table.begin());
  std::unordered_map<uint64_t, std::vector<uint8_t>> fresh;  // table index -> block bytes
  uint64_t next = area;
  for (uint64_t t = area / per_block; end > area && t <= (end - 1) / per_block; ++t) {
    if (has_block(t)) continue;
    table[t] = next++ * cs;
    fresh.emplace(t, std::vector<uint8_t>(cs, 0));
  }
  file_end_ = end * cs;
  for (uint64_t c = area; c < end; ++c) metadata_clusters_.insert(c);
  // Every cluster of the area gets refcount 1: in the new blocks, or in an existing block (the
  // old table covers that part already; a crash before the switch leaks them).
  for (uint64_t c = area; c < end; ++c) {
    auto it = fresh.find(c / per_block);
    if (it != fresh.end())
      put_entry(it->second.data(), c % per_block, h_.refcount_bits(), 1);
    else
      TRY(set_refcount(c, 1));
  }
  for (const auto& [t, block] : fresh)
    TRY_CTX(pwrite_full(fd_.get(), block, table[t]), "write refcount block");
  std::vector<uint8_t> raw(table.size() * 8);
  for (size_t i = 0; i < table.size(); ++i) store_be64(&raw[i * 8], table[i]);
  TRY_CTX(pwrite_full(fd_.get(), raw, table_at), "write refcount table");
  if (::fdatasync(fd_.get()) != 0) return errno_error("sync refcount table");
  uint8_t hdr[12];
  store_be64(hdr, table_at);
  store_be32(hdr + 8, uint32_t(rt_clusters));
  TRY_CTX(pwrite_full(fd_.get(), hdr, 48), "write header");
  if (::fdatasync(fd_.get()) != 0) return errno_error("sync header");
  uint64_t old_first = h_.refcount_table_offset / cs;
  uint64_t old_clusters = h_.refcount_table_clusters;
  h_.refcount_table_offset = table_at;
  h_.refcount_table_clusters = uint32_t(rt_clusters);
  refcount_table_ = std::move(table);
  for (auto& [t, block] : fresh) refcount_blocks_.emplace(refcount_table_[t], std::move(block));
  for (uint64_t c = old_first; c < old_first + old_clusters; ++c) TRY(decref_cluster(c));
  return {};
}

Result<void> Qcow2::set_refcount(uint64_t cluster, uint64_t value) {
  uint32_t bits = h_.refcount_bits();
  if (bits < 64 && value >> bits)
    return make_error(ErrorCode::kTooLarge, "refcount of cluster {:#x} would overflow",
                      cluster * cluster_size_);
  TRY(ensure_refcount_block(cluster));
  uint64_t per_block = h_.refcount_block_entries();
  uint64_t t = cluster / per_block;
  std::vector<uint8_t>* block = TRY(refcount_block(t));
  auto [first, len] = put_entry(block->data(), cluster % per_block, bits, value);
  return with_context(
      pwrite_full(fd_.get(), std::span(block->data() + first, len), refcount_table_[t] + first),
      "write refcount block");
}

// Sets the refcounts of a run of clusters with one write per refcount block touched.
Result<void> Qcow2::set_refcounts(uint64_t first, uint64_t count, uint64_t value) {
  uint64_t per_block = h_.refcount_block_entries();
  uint32_t bits = h_.refcount_bits();
  for (uint64_t c = first; c < first + count;) {
    TRY(ensure_refcount_block(c));
    uint64_t t = c / per_block;
    uint64_t n = std::min(first + count - c, (t + 1) * per_block - c);
    std::vector<uint8_t>* block = TRY(refcount_block(t));
    uint64_t lo = UINT64_MAX, hi = 0;
    for (uint64_t i = c; i < c + n; ++i) {
      auto [at, len] = put_entry(block->data(), i % per_block, bits, value);
      lo = std::min(lo, at);
      hi = std::max(hi, at + len);
    }
    TRY_CTX(pwrite_full(fd_.get(), std::span(block->data() + lo, hi - lo), refcount_table_[t] + lo),
            "write refcount block");
    c += n;
  }
  return {};
}

Result<uint64_t> Qcow2::allocate_clusters(uint64_t count) {
  uint64_t end = file_end_ / cluster_size_;
  uint64_t start = free_hint_;
  uint64_t run = 0;
  for (uint64_t c = free_hint_; c < end && run < count; ++c) {
    if (TRY(refcount(c)) != 0 || metadata_clusters_.count(c)) {
      run = 0;
      start = c + 1;
      continue;
    }
    ++run;
  }
  if (run < count) {
    free_hint_ = std::max(free_hint_, start);
    // Extend from the last free run at the end of the file (or the end itself).
    file_end_ = std::max(file_end_, (start + count) * cluster_size_);
  }
  TRY(set_refcounts(start, count, 1));
  // A refcount block created above may sit right after the run; the run stays valid because
  // ensure_refcount_block only takes clusters at file_end_, which is past the run.
  if (start == free_hint_) free_hint_ = start + count;
  return start * cluster_size_;
}

Result<void> Qcow2::decref_cluster(uint64_t cluster) {
  uint64_t rc = TRY(refcount(cluster));
  if (rc == 0) {
    Error e(ErrorCode::kInvalidArgument,
            fmt::format("refcount of cluster {:#x} is already zero", cluster * cluster_size_));
    TRY(mark_corrupt(e));
    return std::unexpected(std::move(e));
  }
  TRY(set_refcount(cluster, rc - 1));
  if (rc == 1) {
    metadata_clusters_.erase(cluster);
    free_hint_ = std::min(free_hint_, cluster);
    TRY(punch_hole(fd_.get(), cluster * cluster_size_, cluster_size_));
  }
  return {};
}

Result<void> Qcow2::release(const Mapping& m) {
  switch (m.kind) {
    case Mapping::Kind::kUnallocated:
      return {};
    case Mapping::Kind::kZero:
    case Mapping::Kind::kNormal:
      if (m.host_offset == 0) return {};
      return decref_cluster(m.host_offset / cluster_size_);
    case Mapping::Kind::kCompressed: {
      uint64_t first = m.host_offset / cluster_size_;
      uint64_t last = (m.host_offset + m.compressed_size - 1) / cluster_size_;
      for (uint64_t c = first; c <= last; ++c) TRY(decref_cluster(c));
      return {};
    }
  }
  return {};
}

// Copies the L1 table to a larger one: new table written and synced, header switched and
// synced, old table freed.
Result<void> Qcow2::grow_l1(uint64_t entries) {
  const uint64_t cs = cluster_size_;
  uint64_t clusters = (entries * 8 + cs - 1) / cs;
  uint64_t at = TRY(allocate_clusters(clusters));
  for (uint64_t i = 0; i < clusters; ++i) metadata_clusters_.insert(at / cs + i);
  std::vector<uint8_t> raw(clusters * cs, 0);
  for (size_t i = 0; i < l1_.size(); ++i) store_be64(&raw[i * 8], l1_[i]);
  TRY_CTX(pwrite_full(fd_.get(), raw, at), "write L1 table");
  if (::fdatasync(fd_.get()) != 0) return errno_error("sync L1 table");
  uint8_t hdr[12];  // l1_size and l1_table_offset are adjacent
  store_be32(hdr, uint32_t(entries));
  store_be64(hdr + 4, at);
  TRY_CTX(pwrite_full(fd_.get(), hdr, 36), "write header");
  if (::fdatasync(fd_.get()) != 0) return errno_error("sync header");
  uint64_t old_first = h_.l1_table_offset / cs;
  uint64_t old_clusters = (uint64_t(h_.l1_size) * 8 + cs - 1) / cs;
  h_.l1_size = uint32_t(entries);
  h_.l1_table_offset = at;
  l1_offset_ = at;
  l1_.resize(entries, 0);
  for (uint64_t c = old_first; c < old_first + old_clusters; ++c) TRY(decref_cluster(c));
  return {};
}

Result<void> Qcow2::resize(uint64_t new_size) {
  if (!writable_) return make_error(ErrorCode::kPermissionDenied, "{}: read-only", where());
  if (corrupt_) return make_error(ErrorCode::kConflict, "{}: image is marked corrupt", where());
  if (new_size % 512 != 0)
    return make_error(ErrorCode::kInvalidArgument, "{}: new size {} is not a multiple of 512 bytes",
                      where(), new_size);
  uint64_t l1_entries = l1_entries_for(new_size, h_.cluster_bits);
  if (new_size > kMaxVirtualSize || l1_entries * 8 > kMaxL1Bytes)
    return make_error(ErrorCode::kInvalidArgument,
                      "{}: new size {} is too large for {} B clusters (the L1 table would "
                      "exceed {} MiB)",
                      where(), new_size, cluster_size_, kMaxL1Bytes >> 20);
  std::unique_lock lock(mu_);
  uint64_t old_size = size_;
  if (new_size < old_size)
    return make_error(ErrorCode::kInvalidArgument,
                      "{}: shrinking a qcow2 volume is not supported; qemu-img resize --shrink "
                      "can do it offline",
                      where());
  if (new_size == old_size) return {};
  // A v2 snapshot may take its size from the header, so growing would change it (qemu refuses
  // too); v3 requires each snapshot entry to record it.
  if (!snapshots_.empty() && h_.version < 3)
    return make_error(ErrorCode::kConflict,
                      "{}: cannot resize a version 2 image with internal snapshots", where());
  for (const SnapshotInfo& s : snapshots_)
    if (!s.disk_size_stored)
      return make_error(ErrorCode::kConflict,
                        "{}: cannot resize: internal snapshot {} does not record its size", where(),
                        s.name);
  if (l1_entries > h_.l1_size) TRY_CTX(grow_l1(l1_entries), "{}: resize", where());
  uint8_t be[8];
  store_be64(be, new_size);
  TRY_CTX(pwrite_full(fd_.get(), be, 24), "{}: write header", where());
  if (::fdatasync(fd_.get()) != 0) return errno_error(where() + ": sync header");
  h_.size = new_size;
  size_ = new_size;
  lock.unlock();
  // The new range must not show the backing file's data beyond the old end (as qemu does).
  if (!backing_ || backing_->size() <= old_size) return {};
  uint64_t end = std::min(new_size, backing_->size());
  uint64_t chunk = h_.version >= 3 ? end : 1 << 20;  // v2 has no zero clusters: data is written
  for (uint64_t pos = old_size; pos < end; pos += chunk)
    TRY(write_zeroes(std::min(chunk, end - pos), pos, ZeroMode::kMayTrim, ZeroSpeed::kAny));
  return {};
}

Result<void> Qcow2::check_data_write(uint64_t host_offset, uint64_t length) {
  for (uint64_t c = host_offset / cluster_size_; c * cluster_size_ < host_offset + length; ++c) {
    if (!metadata_clusters_.count(c)) continue;
    Error e(ErrorCode::kInvalidArgument,
            fmt::format("data write at {:#x} would overwrite metadata", host_offset));
    TRY(mark_corrupt(e));
    return std::unexpected(std::move(e));
  }
  return {};
}

Result<void> Qcow2::mark_corrupt(const Error& why) {
  if (corrupt_ || !writable_) return {};
  corrupt_ = true;
  spdlog::error("{}: marking image corrupt: {}", where(), why.message());
  if (h_.version < 3) return {};
  h_.incompatible_features |= kIncompatCorrupt;
  return write_header_features();
}

}  // namespace vireo::storage
