// qcow2 metadata: the L2 table cache, refcounts and cluster allocation.
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
  if (t >= refcount_table_.size())
    return make_error(ErrorCode::kTooLarge,
                      "refcount table is full (cluster {:#x}); growing it is not supported",
                      cluster * cluster_size_);
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
