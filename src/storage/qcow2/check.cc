// qcow2 consistency check: recomputes every cluster's refcount from the tables, as
// `qemu-img check` does, and compares it with the stored refcounts.
#include <algorithm>

#include "storage/io.h"
#include "storage/qcow2/qcow2.h"

namespace vireo::storage {

using namespace qcow2;

namespace {

constexpr size_t kMaxMessages = 8;

struct Counter {
  std::vector<uint32_t> counts;
  uint64_t cluster_size;
  Qcow2CheckResult* result;

  void note(std::string message) {
    if (result->messages.size() < kMaxMessages) result->messages.push_back(std::move(message));
  }
  // Counts one reference to every cluster of [offset, offset+bytes).
  void ref(uint64_t offset, uint64_t bytes, std::string_view what) {
    if (bytes == 0) return;
    for (uint64_t c = offset / cluster_size; c <= (offset + bytes - 1) / cluster_size; ++c) {
      if (c >= counts.size()) {
        ++result->corruptions;
        note(fmt::format("{} at {:#x} is beyond the end of the file", what, offset));
        return;
      }
      ++counts[c];
    }
  }
};

}  // namespace

Result<Qcow2CheckResult> Qcow2::check() {
  std::unique_lock lock(mu_);
  Qcow2CheckResult result;
  uint64_t fsize = TRY(file_size(fd_.get()));
  Counter counter{std::vector<uint32_t>((fsize + cluster_size_ - 1) / cluster_size_), cluster_size_,
                  &result};
  counter.ref(0, cluster_size_, "header");
  counter.ref(h_.refcount_table_offset, uint64_t(h_.refcount_table_clusters) * cluster_size_,
              "refcount table");
  for (uint64_t b : refcount_table_) counter.ref(b, b ? cluster_size_ : 0, "refcount block");
  counter.ref(h_.snapshots_offset, snapshot_table_bytes_, "snapshot table");

  std::vector<std::pair<uint64_t, uint64_t>> l1_tables = {{h_.l1_table_offset, h_.l1_size}};
  for (const SnapshotInfo& s : snapshots_) l1_tables.emplace_back(s.l1_table_offset, s.l1_size);
  for (auto [l1_offset, l1_size] : l1_tables) {
    counter.ref(l1_offset, l1_size * 8, "L1 table");
    std::vector<uint8_t> raw(l1_size * 8);
    TRY_CTX(pread_full(fd_.get(), raw, l1_offset), "read L1 table");
    for (uint64_t i = 0; i < l1_size; ++i) {
      uint64_t l2 = load_be64(&raw[i * 8]) & kOffsetMask;
      if (l2 == 0) continue;
      if (l2 % cluster_size_ || l2 >= fsize) {
        ++result.corruptions;
        counter.note(fmt::format("L1 entry {} points at {:#x}", i, l2));
        continue;
      }
      counter.ref(l2, cluster_size_, "L2 table");
      std::vector<uint64_t> entries;
      {
        std::lock_guard cache_lock(cache_mu_);
        entries = *TRY(l2_table(l2));
      }
      for (uint64_t e : entries) {
        Mapping m = decode_l2_entry(e, h_);
        if (auto ok = validate_mapping(m, h_, fsize); !ok) {
          ++result.corruptions;
          counter.note(ok.error().message());
          continue;
        }
        if (m.kind == Mapping::Kind::kCompressed)
          counter.ref(m.host_offset, m.compressed_size, "compressed cluster");
        else if (m.host_offset)
          counter.ref(m.host_offset, cluster_size_, "data cluster");
      }
    }
  }
  for (uint64_t c = 0; c < counter.counts.size(); ++c) {
    uint64_t stored = TRY(refcount(c));
    if (stored < counter.counts[c]) {
      ++result.corruptions;
      counter.note(fmt::format("cluster {:#x}: refcount {} but {} references", c * cluster_size_,
                               stored, counter.counts[c]));
    } else if (stored > counter.counts[c]) {
      ++result.leaks;
      counter.note(fmt::format("cluster {:#x}: refcount {} but {} references (leak)",
                               c * cluster_size_, stored, counter.counts[c]));
    }
  }
  return result;
}

}  // namespace vireo::storage
