#pragma once
// Qcow2: Vireo's own qcow2 reader/writer as a BlockDevice. Versions 2 and 3, every refcount
// width, cluster sizes 512 B-2 MiB, zero clusters, backing chains, compressed clusters (read;
// writing over one allocates a normal cluster), internal snapshots (list, open read-only),
// dirty and corrupt bits, growing the virtual size (resize) and the refcount table.
//
// Metadata is written through (refcount increments, then data, then L2/L1, then refcount
// decrements), so a crash can leak clusters but never points a table at a free cluster; the
// file is fdatasync'ed on flush(). Lazy refcounts are honoured on read (a dirty image is checked
// before it is opened for writing) but never used when writing.
//
// Thread safety: all BlockDevice methods may be called concurrently. Reads and in-place writes
// of allocated clusters run in parallel under a shared lock; anything that changes the mapping
// (allocation, discard, zeroing, copy-on-write) takes the lock exclusively.
#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <unordered_map>
#include <unordered_set>

#include "base/fd.h"
#include "storage/block_device.h"
#include "storage/qcow2/format.h"
#include "storage/raw_file.h"

namespace vireo::storage {

struct Qcow2CreateOptions {
  uint64_t size = 0;
  uint32_t cluster_size = 65536;
  uint32_t version = 3;  // 2 is qemu's compat=0.10
  uint32_t refcount_bits = 16;
  bool lazy_refcounts = false;
  std::string backing_file;    // stored as given; relative names resolve against the image's dir
  std::string backing_format;  // "raw", "qcow2" or empty (probed)
};

struct Qcow2OpenOptions {
  OpenMode mode = OpenMode::kReadWrite;
  std::optional<std::string> snapshot;  // id or name: open that snapshot read-only
  bool open_backing = true;
  size_t l2_cache_bytes = 32 << 20;
};

// What a consistency check found, in qemu-img check's terms.
struct Qcow2CheckResult {
  uint64_t corruptions = 0;           // references out of the file, refcount lower than references
  uint64_t leaks = 0;                 // clusters with a refcount but no reference
  std::vector<std::string> messages;  // first few findings, for humans
  bool ok() const { return corruptions == 0 && leaks == 0; }
};

class Qcow2 final : public BlockDevice {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Qcow2>> open(const std::filesystem::path& path,
                                                           const Qcow2OpenOptions& options = {});
  // Opens an already open image file; path is used for messages and relative backing names.
  [[nodiscard]] static Result<std::unique_ptr<Qcow2>> open_fd(Fd fd,
                                                              const std::filesystem::path& path,
                                                              const Qcow2OpenOptions& options);
  // Like qemu-img create -f qcow2: header, refcount table and block, L1 table; no data.
  [[nodiscard]] static Result<void> create(const std::filesystem::path& path,
                                           const Qcow2CreateOptions& options);
  ~Qcow2() override;

  uint64_t size() const override { return size_; }
  bool read_only() const override { return !writable_; }
  Result<void> read(std::span<uint8_t> buf, uint64_t offset) override;
  Result<void> write(std::span<const uint8_t> buf, uint64_t offset) override;
  Result<void> flush() override;
  Result<void> trim(uint64_t length, uint64_t offset) override;
  Result<void> write_zeroes(uint64_t length, uint64_t offset, ZeroMode mode,
                            ZeroSpeed speed) override;
  Result<std::vector<Extent>> block_status(uint64_t length, uint64_t offset) override;

  const qcow2::Header& header() const { return h_; }
  const std::vector<qcow2::SnapshotInfo>& snapshots() const { return snapshots_; }
  BlockDevice* backing() const { return backing_.get(); }
  // Recomputes every refcount from the tables and compares with the stored ones.
  [[nodiscard]] Result<Qcow2CheckResult> check();
  // Grows the virtual size to new_size (a multiple of 512), like qemu-img resize: the L1 table
  // grows when needed (new table written and synced, then the header switched, then the old one
  // freed); with a backing file longer than the old size the new range reads as zeroes.
  // Shrinking is refused, and so is resizing a version 2 image with internal snapshots (their
  // entries do not record their own size). Safe to call while other threads do I/O; they see
  // the new size once it returns.
  [[nodiscard]] Result<void> resize(uint64_t new_size);

 private:
  using Mapping = qcow2::ClusterMapping;
  struct CachedTable {
    std::vector<uint64_t> entries;  // host byte order
    uint64_t last_use = 0;
  };

  struct Chain;  // the images already open below this one, to detect loops
  Qcow2() = default;
  // open.cc
  static Result<std::unique_ptr<Qcow2>> open_in_chain(Fd fd, const std::filesystem::path& path,
                                                      const Qcow2OpenOptions& options,
                                                      Chain& chain);
  Result<void> load_tables(const Qcow2OpenOptions& options);
  Result<void> load_snapshots();
  Result<void> load_refcount_table();
  Result<void> open_backing_file(Chain& chain);
  Result<void> prepare_for_writing();
  Result<void> write_header_features();
  // meta.cc: tables, refcounts, allocation (callers hold mu_ as noted)
  Result<Mapping> lookup(uint64_t guest_cluster);               // mu_ shared or exclusive
  Result<std::vector<uint64_t>*> l2_table(uint64_t l2_offset);  // needs cache_mu_
  Result<uint64_t> writable_l2(uint64_t l1_index);              // mu_ exclusive
  Result<void> set_l2_entries(uint64_t l2_offset, uint64_t first, std::span<const uint64_t> e);
  Result<uint64_t> refcount(uint64_t cluster);
  Result<void> set_refcount(uint64_t cluster, uint64_t value);
  Result<void> set_refcounts(uint64_t first, uint64_t count, uint64_t value);
  Result<std::vector<uint8_t>*> refcount_block(uint64_t table_index);
  Result<void> ensure_refcount_block(uint64_t cluster);
  Result<void> grow_refcount_table(uint64_t table_index);  // mu_ exclusive
  Result<void> grow_l1(uint64_t entries);                  // mu_ exclusive
  Result<uint64_t> allocate_clusters(uint64_t count);      // returns the host byte offset
  Result<void> release(const Mapping& m);                  // drops the references of an old mapping
  Result<void> decref_cluster(uint64_t cluster);
  Result<void> check_data_write(uint64_t host_offset, uint64_t length);
  Result<void> mark_corrupt(const Error& why);
  // io.cc
  Result<void> read_cluster_part(const Mapping& m, uint64_t guest_offset, std::span<uint8_t> dst);
  Result<void> read_compressed(const Mapping& m, std::span<uint8_t> cluster);
  Result<void> read_backing(uint64_t guest_offset, std::span<uint8_t> dst);
  Result<bool> write_in_place(std::span<const uint8_t> buf, uint64_t offset);
  Result<void> write_allocating(std::span<const uint8_t> buf, uint64_t offset);
  Result<uint64_t> write_run(std::span<const uint8_t> buf, uint64_t offset);
  Result<void> set_clusters(uint64_t first, uint64_t count, uint64_t entry_flags);
  Result<void> zero_partial(uint64_t length, uint64_t offset);
  Result<void> check_writable(uint64_t length, uint64_t offset) const;
  std::string where() const { return "qcow2 " + path_; }

  Fd fd_;
  std::string path_;
  qcow2::Header h_;
  bool writable_ = false;
  std::atomic<uint64_t> size_ = 0;  // only grows while open (resize), read without mu_
  uint64_t cluster_size_ = 0;
  std::vector<qcow2::SnapshotInfo> snapshots_;
  uint64_t snapshot_table_bytes_ = 0;
  std::unique_ptr<BlockDevice> backing_;

  std::shared_mutex mu_;      // see the class comment
  std::vector<uint64_t> l1_;  // the active (or snapshot) L1 table, host order
  uint64_t l1_offset_ = 0;
  std::vector<uint64_t> refcount_table_;                                // host order
  std::unordered_map<uint64_t, std::vector<uint8_t>> refcount_blocks_;  // on-disk bytes
  std::unordered_set<uint64_t> metadata_clusters_;  // host cluster numbers holding tables
  uint64_t file_end_ = 0;                           // allocation frontier, cluster aligned
  uint64_t free_hint_ = 1;                          // no free cluster below this one
  bool corrupt_ = false;

  std::mutex cache_mu_;  // guards l2_cache_ and use_clock_ (readers share mu_)
  std::unordered_map<uint64_t, CachedTable> l2_cache_;
  size_t l2_cache_capacity_ = 0;
  uint64_t use_clock_ = 0;
};

}  // namespace vireo::storage
