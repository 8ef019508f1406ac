#pragma once
// ThinPool: Vireo's thin-provisioned pool on one file or block device, in the spirit of LVM
// thin pools. Space is handed out in fixed-size extents (64 KiB by default) on first write;
// every volume maps its virtual extents to physical extents through a two-level tree (a root
// of leaf pointers, leaves of 4096 entries, i.e. 256 MiB of volume per leaf at 64 KiB).
//
// Snapshots and clones share the source's root (O(1), whatever the volume size). Nodes are
// copied on the first write below them; copying a leaf adds one reference to each extent it
// maps, so an extent's refcount is the number of distinct leaves that map it, and a write to an
// extent with refcount > 1 goes to a new extent (copy-on-write).
//
// On disk (see docs/storage.md): two alternating checksummed superblocks, a write-ahead journal
// of logical metadata records (checksummed, generation-stamped) and two alternating checkpoint
// slots holding the whole mapping. flush() = fdatasync the data, append the journal records,
// fdatasync; a full journal turns into a checkpoint to the inactive slot followed by a
// superblock switch. Extents freed since the last commit are not reused before the commit, so a
// crash never leaves a durable mapping pointing at another volume's data.
//
// Thread safety: every method may be called from any thread. One shared_mutex: reads and
// in-place writes to exclusively owned extents share it; anything that changes a mapping or
// the journal takes it exclusively.
#include <array>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "base/fd.h"
#include "storage/block_device.h"

namespace vireo::storage {

struct ThinPoolCreateOptions {
  uint64_t size = 0;                 // a file is created (sparse) with this size; 0 = block device
  uint32_t extent_size = 64 << 10;   // power of two, 64 KiB - 1 MiB
  uint64_t journal_bytes = 8 << 20;  // a full journal is folded into a checkpoint
};

struct ThinVolumeInfo {
  std::string name;
  uint64_t size = 0;       // virtual bytes
  uint64_t allocated = 0;  // bytes of extents mapped (shared extents count for each volume)
  bool read_only = false;  // snapshots are read-only, clones writable
  std::string origin;      // the volume it was snapshotted or cloned from, when known
};

struct ThinPoolStats {
  uint64_t extent_size = 0;
  uint64_t extents = 0;        // data extents in the pool
  uint64_t used_extents = 0;   // extents with a reference
  uint64_t virtual_bytes = 0;  // sum of the volumes' sizes (overcommit when > data bytes)
  uint64_t volumes = 0;
  uint64_t metadata_bytes = 0;  // size of the last checkpoint
  uint64_t data_bytes() const { return extents * extent_size; }
  uint64_t used_bytes() const { return used_extents * extent_size; }
};

struct ThinCheckResult {
  uint64_t errors = 0;
  std::vector<std::string> messages;  // first findings (errors and warnings), for humans
  bool ok() const { return errors == 0; }
};

enum class VolumeAccess { kReadWrite, kReadOnly };

class ThinPool : public std::enable_shared_from_this<ThinPool> {
 public:
  static constexpr uint32_t kLeafEntries = 4096;
  static constexpr uint64_t kMaxVolumeSize = uint64_t(1) << 46;  // 64 TiB
  // Leaf slots of all volumes' roots together (16 bytes of memory each, whether a leaf is there
  // or not): 1 PiB of volumes at 64 KiB extents. Bounds the memory a checkpoint can ask for.
  static constexpr uint64_t kMaxMappingSlots = uint64_t(1) << 22;

  // Formats path as an empty pool. A regular file is created or truncated to options.size; a
  // block device is used whole (options.size 0 or at most the device's size).
  [[nodiscard]] static Result<void> create(const std::filesystem::path& path,
                                           const ThinPoolCreateOptions& options);
  // Opens (and locks) a pool, replays its journal and writes a fresh checkpoint.
  [[nodiscard]] static Result<std::shared_ptr<ThinPool>> open(const std::filesystem::path& path);
  ~ThinPool();  // writes a checkpoint

  [[nodiscard]] Result<void> create_volume(const std::string& name, uint64_t size);
  [[nodiscard]] Result<void> remove_volume(const std::string& name);
  [[nodiscard]] Result<void> resize_volume(const std::string& name, uint64_t size);
  // A new volume sharing every extent of src; kReadOnly makes a snapshot, kReadWrite a clone.
  [[nodiscard]] Result<void> snapshot(const std::string& src, const std::string& dst,
                                      VolumeAccess access);
  // Makes volume name share snapshot's mapping again (O(1)): its content, and size, become the
  // snapshot's. Open devices of name keep their old size; reopen to see a new one.
  [[nodiscard]] Result<void> restore(const std::string& name, const std::string& snapshot);
  std::vector<ThinVolumeInfo> volumes() const;
  [[nodiscard]] Result<ThinVolumeInfo> volume(const std::string& name) const;
  ThinPoolStats stats() const;
  // A BlockDevice for the volume, of its current size; it fails its I/O with kNotFound once the
  // volume is removed.
  [[nodiscard]] Result<std::shared_ptr<BlockDevice>> open_volume(const std::string& name);
  // Makes every completed write and metadata change of every volume durable.
  [[nodiscard]] Result<void> flush();
  // Recounts every reference from the mappings and compares with the refcounts, the free and
  // pending lists, the per-volume accounting and the superblock copies.
  ThinCheckResult check() const;
  const std::string& path() const { return path_; }

  // Tests only: plants an inconsistency that check() must find.
  void testing_set_refcount(uint32_t extent, uint32_t value);

 private:
  friend class ThinVolume;
  struct Leaf {
    std::array<uint32_t, kLeafEntries> e{};  // physical extent + 1; 0 = unmapped
  };
  struct Root {
    std::vector<std::shared_ptr<Leaf>> leaves;
  };
  struct Volume {
    uint32_t id = 0;
    std::string name;
    uint64_t size = 0;
    bool read_only = false;
    std::string origin;
    std::shared_ptr<Root> root;
    uint64_t mapped = 0;  // mapped virtual extents
  };
  struct Layout {
    uint32_t extent_size = 0;
    uint64_t extents = 0;
    uint64_t data_off = 0;
    uint64_t journal_off = 0;
    uint64_t journal_bytes = 0;
    std::array<uint64_t, 2> ckpt_off{};
    uint64_t ckpt_bytes = 0;
  };
  struct Super {
    Layout layout;
    uint64_t seq = 0;
    uint32_t active = 0;  // checkpoint slot
    uint64_t ckpt_len = 0;
    uint32_t ckpt_crc = 0;
    uint64_t journal_gen = 0;
  };
  enum class Op : uint32_t {
    kCreate = 1,
    kRemove = 2,
    kMap = 3,
    kSnapshot = 4,
    kResize = 5,
    kRestore = 6
  };

  ThinPool() = default;
  // thin_meta.cc: on-disk format
  static uint32_t checksum(std::span<const uint8_t> data);
  static std::vector<uint8_t> encode_super(const Super& s);
  static Result<Super> decode_super(std::span<const uint8_t> block);
  std::vector<uint8_t> encode_checkpoint() const;
  Result<void> decode_checkpoint(std::span<const uint8_t> data);
  Result<void> replay_journal();
  Result<void> apply_record(Op op, std::span<const uint8_t> payload);
  void append_record(Op op, std::span<const uint8_t> payload);
  Result<void> commit_locked();
  Result<void> checkpoint_locked();
  Result<void> write_super_locked();
  void release_pending();

  // thin_pool.cc: the mapping (callers hold mu_ exclusively unless noted)
  Result<Volume*> find(const std::string& name);
  Result<Volume*> find_id(uint32_t id);                   // mu_ shared or exclusive
  const Volume* find_id_const(uint32_t id) const;         // mu_ shared or exclusive
  uint32_t lookup(const Volume& v, uint64_t vext) const;  // mu_ shared or exclusive
  Leaf& own_leaf(Volume& v, uint64_t leaf_index);
  // True when a write to the mapped extent may go in place (nothing else shares it).
  bool owned(const Volume& v, uint64_t vext, uint32_t value) const;
  void set_mapping(Volume& v, uint64_t vext, uint32_t value);
  void drop_leaf(std::shared_ptr<Leaf>& leaf);
  void drop_root(std::shared_ptr<Root>& root);
  void ref(uint32_t extent);
  void unref(uint32_t extent);
  std::optional<uint32_t> find_free();  // never commits
  Result<uint32_t> allocate();          // may commit to reuse freed extents
  Result<void> zero_extent_tail(uint32_t extent, uint64_t from);
  uint64_t extent_offset(uint32_t extent) const {
    return layout_.data_off + uint64_t(extent) * layout_.extent_size;
  }
  // The operations, shared by the live calls and the journal replay.
  Result<void> do_create(uint32_t id, const std::string& name, uint64_t size, bool read_only,
                         const std::string& origin);
  Result<void> do_remove(uint32_t id);
  Result<void> do_resize(uint32_t id, uint64_t size);
  Result<void> do_snapshot(uint32_t src, uint32_t dst, const std::string& name, bool read_only);
  Result<void> do_map(uint32_t id, uint64_t vext, uint32_t value);
  Result<void> do_restore(uint32_t id, uint32_t snapshot);
  Result<void> validate_size(uint64_t size) const;
  uint64_t slots_for(uint64_t size) const;  // root slots of a volume of this size
  // Fails when adding `add` slots (after removing `remove`) would pass kMaxMappingSlots.
  Result<void> check_mapping_budget(uint64_t add, uint64_t remove) const;

  // thin_volume.cc helpers
  Result<void> volume_write(uint32_t id, std::span<const uint8_t> buf, uint64_t offset);
  Result<void> volume_unmap(uint32_t id, uint64_t first_vext, uint64_t count);

  std::string path_;
  Fd fd_;
  bool regular_file_ = true;
  Layout layout_;
  Super super_;
  mutable std::shared_mutex mu_;
  std::map<uint32_t, Volume> vols_;
  uint32_t next_id_ = 1;
  std::vector<uint32_t> refs_;
  std::vector<bool> pending_flag_;
  std::vector<uint32_t> pending_;  // freed since the last commit: not reusable yet
  uint64_t used_ = 0;
  uint64_t hint_ = 0;
  std::vector<uint8_t> jbuf_;  // journal records not yet written
  uint64_t journal_pos_ = 0;
  uint64_t journal_seq_ = 0;
  bool replaying_ = false;
  bool broken_ = false;  // a metadata write failed: refuse further changes
};

}  // namespace vireo::storage
