#pragma once
// The qcow2 on-disk format (qemu docs/interop/qcow2.txt): header parsing with every field
// range-checked, header serialisation, snapshot table parsing and table-entry decoding. Pure
// functions over bytes, so the fuzzer can drive them without a file.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace vireo::storage::qcow2 {

inline constexpr uint32_t kMagic = 0x514649fb;  // "QFI\xfb"
inline constexpr uint32_t kMinClusterBits = 9;
inline constexpr uint32_t kMaxClusterBits = 21;
inline constexpr uint64_t kMaxL1Bytes = 32ull << 20;            // qemu's QCOW_MAX_L1_SIZE
inline constexpr uint64_t kMaxRefcountTableBytes = 8ull << 20;  // qemu's QCOW_MAX_REFTABLE_SIZE
inline constexpr uint32_t kMaxSnapshots = 65536;
inline constexpr uint32_t kMaxBackingNameLength = 1023;
inline constexpr uint64_t kMaxVirtualSize = 1ull << 55;  // host offsets have 56 bits

// Incompatible feature bits.
inline constexpr uint64_t kIncompatDirty = 1ull << 0;
inline constexpr uint64_t kIncompatCorrupt = 1ull << 1;
inline constexpr uint64_t kIncompatExternalData = 1ull << 2;
inline constexpr uint64_t kIncompatCompression = 1ull << 3;
inline constexpr uint64_t kIncompatExtendedL2 = 1ull << 4;
inline constexpr uint64_t kIncompatSupported =
    kIncompatDirty | kIncompatCorrupt | kIncompatCompression;
// Compatible feature bits.
inline constexpr uint64_t kCompatLazyRefcounts = 1ull << 0;

// Header extension types.
inline constexpr uint32_t kExtEnd = 0;
inline constexpr uint32_t kExtBackingFormat = 0xe2792aca;
inline constexpr uint32_t kExtFeatureTable = 0x6803f857;
inline constexpr uint32_t kExtEncryption = 0x0537be77;
inline constexpr uint32_t kExtExternalData = 0x44415441;

// L1/L2 entry bits.
inline constexpr uint64_t kFlagCopied = 1ull << 63;
inline constexpr uint64_t kFlagCompressed = 1ull << 62;
inline constexpr uint64_t kFlagZero = 1ull << 0;
inline constexpr uint64_t kOffsetMask = 0x00fffffffffffe00ull;

inline constexpr uint32_t kV2HeaderLength = 72;
inline constexpr uint32_t kV3HeaderLength = 104;

struct Header {
  uint32_t version = 3;
  uint64_t backing_file_offset = 0;
  uint32_t backing_file_size = 0;
  uint32_t cluster_bits = 16;
  uint64_t size = 0;
  uint32_t l1_size = 0;
  uint64_t l1_table_offset = 0;
  uint64_t refcount_table_offset = 0;
  uint32_t refcount_table_clusters = 0;
  uint32_t nb_snapshots = 0;
  uint64_t snapshots_offset = 0;
  uint64_t incompatible_features = 0;
  uint64_t compatible_features = 0;
  uint64_t autoclear_features = 0;
  uint32_t refcount_order = 4;
  uint32_t header_length = kV3HeaderLength;
  uint8_t compression_type = 0;
  // From the header extensions and the backing file name area.
  std::string backing_file;
  std::string backing_format;

  uint64_t cluster_size() const { return 1ull << cluster_bits; }
  uint64_t l2_entries() const { return cluster_size() / 8; }
  uint32_t refcount_bits() const { return 1u << refcount_order; }
  // Refcount entries in one refcount block.
  uint64_t refcount_block_entries() const { return cluster_size() * 8 / refcount_bits(); }
};

// Parses and validates the header from the first cluster of the image (or the first
// min(file_size, 2 MiB) bytes). file_size bounds every table the header points at.
[[nodiscard]] Result<Header> parse_header(std::span<const uint8_t> data, uint64_t file_size);

// Serialises the header fields, the backing-format extension and the backing file name into one
// cluster-sized buffer; fails if they do not fit.
[[nodiscard]] Result<std::vector<uint8_t>> serialize_header(const Header& h);
// The fixed header fields only (header_length bytes), for in-place updates of feature bits.
std::vector<uint8_t> serialize_fixed_header(const Header& h);

struct SnapshotInfo {
  std::string id;
  std::string name;
  uint64_t l1_table_offset = 0;
  uint32_t l1_size = 0;
  uint64_t disk_size = 0;         // virtual size when the snapshot was taken
  bool disk_size_stored = false;  // the entry's extra data records disk_size (else: the header's)
  uint64_t date_sec = 0;
  uint64_t vm_state_size = 0;
};

// Parses nb_snapshots entries of the snapshot table; each L1 table is checked against the file
// size and the image's cluster size. table_bytes receives the size of the table.
[[nodiscard]] Result<std::vector<SnapshotInfo>> parse_snapshot_table(std::span<const uint8_t> data,
                                                                     const Header& h,
                                                                     uint64_t file_size,
                                                                     uint64_t* table_bytes);

// Where the data of one guest cluster lives, decoded from its L2 entry.
struct ClusterMapping {
  enum class Kind { kUnallocated, kZero, kNormal, kCompressed };
  Kind kind = Kind::kUnallocated;
  uint64_t host_offset = 0;      // kNormal, kZero with preallocation, kCompressed (byte offset)
  uint64_t compressed_size = 0;  // kCompressed: bytes of deflate data starting at host_offset
  bool copied = false;           // refcount is exactly one: may be written in place
};

ClusterMapping decode_l2_entry(uint64_t entry, const Header& h);
// Checks a data cluster mapping against the file: aligned, inside the file.
[[nodiscard]] Result<void> validate_mapping(const ClusterMapping& m, const Header& h,
                                            uint64_t file_size);

// Number of L1 entries needed to map a virtual size.
uint64_t l1_entries_for(uint64_t size, uint32_t cluster_bits);

}  // namespace vireo::storage::qcow2
