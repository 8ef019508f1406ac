// ThinPool on-disk metadata: superblocks, checkpoints and the journal. All integers big-endian;
// every structure carries a CRC-32 (zlib) so torn or corrupted metadata is detected, never
// trusted.
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <unordered_map>

#include "base/endian.h"
#include "storage/io.h"
#include "storage/pool/thin_pool.h"

namespace vireo::storage {
namespace {

constexpr char kSuperMagic[8] = {'V', 'I', 'R', 'E', 'O', 'T', 'H', 'P'};
constexpr uint64_t kCkptMagic = 0x56495245434b5054ull;  // "VIRECKPT"
constexpr uint32_t kRecordMagic = 0x56524543;           // "VREC"
constexpr uint32_t kVersion = 1;
constexpr size_t kSuperCrcAt = 124;
constexpr size_t kRecordHeader = 32;  // magic, crc, gen, seq, op, length

uint32_t crc(std::span<const uint8_t> data) {
  return uint32_t(::crc32(0, data.data(), uInt(data.size())));
}

class Writer {
 public:
  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void str(const std::string& s) {
    u16(uint16_t(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  std::vector<uint8_t>& bytes() { return out_; }

 private:
  void put(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out_.push_back(uint8_t(v >> (8 * i)));
  }
  std::vector<uint8_t> out_;
};

// Bounds-checked reader: a read past the end sets failed() and yields zeroes.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> d) : d_(d) {}
  uint16_t u16() { return uint16_t(get(2)); }
  uint32_t u32() { return uint32_t(get(4)); }
  uint64_t u64() { return get(8); }
  std::string str() {
    size_t n = u16();
    if (failed_ || d_.size() - pos_ < n) {
      failed_ = true;
      return {};
    }
    std::string s(reinterpret_cast<const char*>(d_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  bool failed() const { return failed_; }
  bool done() const { return pos_ == d_.size(); }

 private:
  uint64_t get(int n) {
    if (failed_ || d_.size() - pos_ < size_t(n)) {
      failed_ = true;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = v << 8 | d_[pos_ + i];
    pos_ += n;
    return v;
  }
  std::span<const uint8_t> d_;
  size_t pos_ = 0;
  bool failed_ = false;
};

std::unexpected<Error> corrupt(const std::string& what) {
  return make_error(ErrorCode::kIo, "corrupt thin pool metadata: {}", what);
}

}  // namespace

uint32_t ThinPool::checksum(std::span<const uint8_t> data) {
  return crc(data);
}

std::vector<uint8_t> ThinPool::encode_super(const Super& s) {
  std::vector<uint8_t> b(4096, 0);
  std::memcpy(b.data(), kSuperMagic, 8);
  uint8_t* p = b.data();
  store_be32(p + 8, kVersion);
  store_be32(p + 12, s.layout.extent_size);
  store_be64(p + 16, s.layout.extents);
  store_be64(p + 24, s.layout.data_off);
  store_be64(p + 32, s.layout.journal_off);
  store_be64(p + 40, s.layout.journal_bytes);
  store_be64(p + 48, s.layout.ckpt_off[0]);
  store_be64(p + 56, s.layout.ckpt_off[1]);
  store_be64(p + 64, s.layout.ckpt_bytes);
  store_be64(p + 72, s.seq);
  store_be32(p + 80, s.active);
  store_be64(p + 88, s.ckpt_len);
  store_be32(p + 96, s.ckpt_crc);
  store_be64(p + 104, s.journal_gen);
  store_be32(p + kSuperCrcAt, crc(std::span(p, kSuperCrcAt)));
  return b;
}

Result<ThinPool::Super> ThinPool::decode_super(std::span<const uint8_t> b) {
  if (b.size() < 4096 || std::memcmp(b.data(), kSuperMagic, 8) != 0)
    return make_error(ErrorCode::kInvalidArgument, "not a Vireo thin pool (bad magic)");
  const uint8_t* p = b.data();
  if (load_be32(p + kSuperCrcAt) != crc(std::span(p, kSuperCrcAt)))
    return corrupt("superblock checksum mismatch");
  if (load_be32(p + 8) != kVersion)
    return make_error(ErrorCode::kInvalidArgument, "thin pool version {} is not supported",
                      load_be32(p + 8));
  Super s;
  s.layout.extent_size = load_be32(p + 12);
  s.layout.extents = load_be64(p + 16);
  s.layout.data_off = load_be64(p + 24);
  s.layout.journal_off = load_be64(p + 32);
  s.layout.journal_bytes = load_be64(p + 40);
  s.layout.ckpt_off = {load_be64(p + 48), load_be64(p + 56)};
  s.layout.ckpt_bytes = load_be64(p + 64);
  s.seq = load_be64(p + 72);
  s.active = load_be32(p + 80);
  s.ckpt_len = load_be64(p + 88);
  s.ckpt_crc = load_be32(p + 96);
  s.journal_gen = load_be64(p + 104);
  const Layout& l = s.layout;
  uint32_t es = l.extent_size;
  if (es < (64u << 10) || es > (1u << 20) || (es & (es - 1)))
    return corrupt(fmt::format("extent size {}", es));
  if (s.active > 1 || s.ckpt_len > l.ckpt_bytes || l.extents > (uint64_t(1) << 31) ||
      l.journal_off < 8192 || l.journal_bytes < 4096 || l.journal_bytes > (1ull << 30) ||
      l.ckpt_bytes > (1ull << 34) || l.ckpt_off[0] < l.journal_off + l.journal_bytes ||
      l.ckpt_off[1] < l.ckpt_off[0] + l.ckpt_bytes || l.data_off < l.ckpt_off[1] + l.ckpt_bytes)
    return corrupt("superblock layout out of range");
  return s;
}

std::vector<uint8_t> ThinPool::encode_checkpoint() const {
  Writer w;
  w.u64(kCkptMagic);
  w.u32(next_id_);
  // Distinct leaves and roots get ids, so sharing survives the round trip.
  std::unordered_map<const Leaf*, uint32_t> leaf_ids;
  std::unordered_map<const Root*, uint32_t> root_ids;
  std::vector<const Leaf*> leaves;
  std::vector<const Root*> roots;
  for (const auto& [id, v] : vols_) {
    if (!root_ids.emplace(v.root.get(), uint32_t(roots.size())).second) continue;
    roots.push_back(v.root.get());
    for (const auto& leaf : v.root->leaves)
      if (leaf && leaf_ids.emplace(leaf.get(), uint32_t(leaves.size())).second)
        leaves.push_back(leaf.get());
  }
  w.u32(uint32_t(leaves.size()));
  for (const Leaf* leaf : leaves) {
    uint32_t n = 0;
    for (uint32_t e : leaf->e) n += e != 0;
    w.u32(n);
    for (uint32_t i = 0; i < kLeafEntries; ++i) {
      if (!leaf->e[i]) continue;
      w.u16(uint16_t(i));
      w.u32(leaf->e[i]);
    }
  }
  w.u32(uint32_t(roots.size()));
  for (const Root* r : roots) {
    uint32_t n = 0;
    for (const auto& leaf : r->leaves) n += leaf != nullptr;
    w.u32(uint32_t(r->leaves.size()));
    w.u32(n);
    for (uint32_t i = 0; i < r->leaves.size(); ++i) {
      if (!r->leaves[i]) continue;
      w.u32(i);
      w.u32(leaf_ids.at(r->leaves[i].get()));
    }
  }
  w.u32(uint32_t(vols_.size()));
  for (const auto& [id, v] : vols_) {
    w.u32(id);
    w.u64(v.size);
    w.u32(v.read_only ? 1 : 0);
    w.u32(root_ids.at(v.root.get()));
    w.str(v.name);
    w.str(v.origin);
  }
  uint32_t used = 0;
  for (uint32_t r : refs_) used += r != 0;
  w.u32(used);
  for (uint32_t i = 0; i < refs_.size(); ++i) {
    if (!refs_[i]) continue;
    w.u32(i);
    w.u32(refs_[i]);
  }
  return std::move(w.bytes());
}

Result<void> ThinPool::decode_checkpoint(std::span<const uint8_t> data) {
  Reader r(data);
  if (r.u64() != kCkptMagic) return corrupt("checkpoint magic");
  next_id_ = r.u32();
  if (next_id_ == 0) return corrupt("next volume id");
  uint32_t nleaves = r.u32();
  if (r.failed() || nleaves > data.size() / 4) return corrupt("checkpoint leaf count");
  std::vector<std::shared_ptr<Leaf>> leaves(nleaves);
  for (auto& leaf : leaves) {
    leaf = std::make_shared<Leaf>();
    uint32_t n = r.u32();
    if (n > kLeafEntries) return corrupt("leaf entry count");
    for (uint32_t k = 0; k < n; ++k) {
      uint16_t i = r.u16();
      uint32_t e = r.u32();
      if (r.failed() || i >= kLeafEntries || e == 0 || e > layout_.extents)
        return corrupt(fmt::format("leaf entry {} -> {}", i, e));
      leaf->e[i] = e;
    }
  }
  uint32_t nroots = r.u32();
  if (r.failed() || nroots > data.size() / 4) return corrupt("checkpoint root count");
  std::vector<std::shared_ptr<Root>> roots(nroots);
  // Every root belongs to a volume, so all of them together fit the mapping budget; checked
  // before the slots are allocated.
  uint64_t total_slots = 0;
  for (auto& root : roots) {
    root = std::make_shared<Root>();
    uint32_t slots = r.u32();
    uint32_t n = r.u32();
    total_slots += slots;
    if (r.failed() || slots > slots_for(kMaxVolumeSize) || total_slots > kMaxMappingSlots ||
        n > slots)
      return corrupt("root size");
    root->leaves.resize(slots);
    for (uint32_t k = 0; k < n; ++k) {
      uint32_t i = r.u32();
      uint32_t leaf = r.u32();
      if (r.failed() || i >= slots || leaf >= nleaves) return corrupt("root entry");
      root->leaves[i] = leaves[leaf];
    }
  }
  uint32_t nvols = r.u32();
  if (r.failed() || nvols > data.size() / 4) return corrupt("volume count");
  for (uint32_t k = 0; k < nvols; ++k) {
    Volume v;
    v.id = r.u32();
    v.size = r.u64();
    v.read_only = r.u32() & 1;
    uint32_t root = r.u32();
    v.name = r.str();
    v.origin = r.str();
    if (r.failed() || root >= nroots || v.id == 0 || v.id >= next_id_ || vols_.count(v.id))
      return corrupt("volume record");
    TRY_CTX(validate_size(v.size), "volume {}", v.name);
    v.root = roots[root];
    uint64_t vexts = (v.size + layout_.extent_size - 1) / layout_.extent_size;
    if (v.root->leaves.size() != (vexts + kLeafEntries - 1) / kLeafEntries)
      return corrupt(fmt::format("volume {}: mapping size does not match its size", v.name));
    for (const auto& leaf : v.root->leaves)
      if (leaf)
        for (uint32_t e : leaf->e) v.mapped += e != 0;
    vols_[v.id] = std::move(v);
  }
  uint32_t nrefs = r.u32();
  if (r.failed() || nrefs > layout_.extents) return corrupt("refcount count");
  for (uint32_t k = 0; k < nrefs; ++k) {
    uint32_t i = r.u32();
    uint32_t count = r.u32();
    if (r.failed() || i >= layout_.extents || count == 0 || refs_[i])
      return corrupt("refcount entry");
    refs_[i] = count;
    ++used_;
  }
  if (!r.done()) return corrupt("trailing bytes in checkpoint");
  return {};
}

void ThinPool::append_record(Op op, std::span<const uint8_t> payload) {
  if (replaying_) return;
  size_t at = jbuf_.size();
  jbuf_.resize(at + kRecordHeader + payload.size());
  uint8_t* p = jbuf_.data() + at;
  store_be32(p, kRecordMagic);
  store_be64(p + 8, super_.journal_gen);
  store_be64(p + 16, journal_seq_++);
  store_be32(p + 24, uint32_t(op));
  store_be32(p + 28, uint32_t(payload.size()));
  std::memcpy(p + kRecordHeader, payload.data(), payload.size());
  store_be32(p + 4, crc(std::span<const uint8_t>(p + 8, kRecordHeader - 8 + payload.size())));
}

Result<void> ThinPool::apply_record(Op op, std::span<const uint8_t> payload) {
  Reader r(payload);
  Result<void> result;
  switch (op) {
    case Op::kCreate: {
      uint32_t id = r.u32();
      uint64_t size = r.u64();
      bool ro = r.u32() & 1;
      std::string name = r.str();
      std::string origin = r.str();
      if (r.failed()) break;
      result = do_create(id, name, size, ro, origin);
      if (result && id >= next_id_) next_id_ = id + 1;
      break;
    }
    case Op::kRemove: {
      uint32_t id = r.u32();
      if (!r.failed()) result = do_remove(id);
      break;
    }
    case Op::kMap: {
      uint32_t id = r.u32();
      uint64_t vext = r.u64();
      uint32_t value = r.u32();
      if (r.failed()) break;
      // A new mapping always names a free extent (that is how the allocator picks them).
      if (value && (value > layout_.extents || refs_[value - 1] != 0))
        return corrupt(fmt::format("journal maps extent {} which is in use", value - 1));
      result = do_map(id, vext, value);
      break;
    }
    case Op::kSnapshot: {
      uint32_t src = r.u32();
      uint32_t dst = r.u32();
      bool ro = r.u32() & 1;
      std::string name = r.str();
      if (r.failed()) break;
      result = do_snapshot(src, dst, name, ro);
      if (result && dst >= next_id_) next_id_ = dst + 1;
      break;
    }
    case Op::kResize: {
      uint32_t id = r.u32();
      uint64_t size = r.u64();
      if (!r.failed()) result = do_resize(id, size);
      break;
    }
    case Op::kRestore: {
      uint32_t id = r.u32();
      uint32_t snapshot = r.u32();
      if (!r.failed()) result = do_restore(id, snapshot);
      break;
    }
    default:
      return corrupt(fmt::format("unknown journal record type {}", uint32_t(op)));
  }
  if (r.failed() || !r.done()) return corrupt("short journal record");
  if (!result) return corrupt("journal record does not apply: " + result.error().message());
  return {};
}

Result<void> ThinPool::replay_journal() {
  std::vector<uint8_t> j(layout_.journal_bytes);
  TRY_CTX(pread_full(fd_.get(), j, layout_.journal_off), "read journal");
  size_t pos = 0;
  replaying_ = true;
  uint64_t seq = 0;
  // Records are valid while magic, checksum, generation and sequence all match; the first one
  // that does not is the end (a torn tail of an unfinished flush, or an older generation).
  while (j.size() - pos >= kRecordHeader) {
    const uint8_t* p = j.data() + pos;
    uint32_t len = load_be32(p + 28);
    if (load_be32(p) != kRecordMagic || load_be64(p + 8) != super_.journal_gen ||
        load_be64(p + 16) != seq || len > j.size() - pos - kRecordHeader)
      break;
    if (load_be32(p + 4) != crc(std::span<const uint8_t>(p + 8, kRecordHeader - 8 + len))) break;
    Result<void> applied =
        apply_record(Op(load_be32(p + 24)), std::span<const uint8_t>(p + kRecordHeader, len));
    if (!applied) {
      replaying_ = false;
      return std::unexpected(
          std::move(applied.error()).with_context(fmt::format("journal record {}", seq)));
    }
    pos += kRecordHeader + len;
    ++seq;
  }
  replaying_ = false;
  // Nothing freed during replay needs protecting: the records that freed it are on disk.
  for (uint32_t e : pending_) pending_flag_[e] = false;
  pending_.clear();
  journal_pos_ = pos;
  journal_seq_ = seq;
  return {};
}

void ThinPool::release_pending() {
  for (uint32_t e : pending_) {
    pending_flag_[e] = false;
    // Give the space back to the file system; a free extent reads as zeroes where it can.
    if (regular_file_ && refs_[e] == 0)
      (void)punch_hole(fd_.get(), extent_offset(e), layout_.extent_size);
  }
  pending_.clear();
}

Result<void> ThinPool::commit_locked() {
  if (broken_)
    return make_error(ErrorCode::kIo, "thin pool {}: metadata write failed earlier", path_);
  // Data first: a record must never reach the disk before the data it maps.
  if (::fdatasync(fd_.get()) != 0) return errno_error("thin pool " + path_ + ": fdatasync");
  if (jbuf_.empty()) {
    release_pending();
    return {};
  }
  if (journal_pos_ + jbuf_.size() > layout_.journal_bytes) return checkpoint_locked();
  Result<void> w = pwrite_full(fd_.get(), jbuf_, layout_.journal_off + journal_pos_);
  if (w && ::fdatasync(fd_.get()) != 0) w = errno_error("fdatasync");
  if (!w) {
    broken_ = true;
    return std::unexpected(std::move(w.error()).with_context("thin pool " + path_ + ": journal"));
  }
  journal_pos_ += jbuf_.size();
  jbuf_.clear();
  release_pending();
  return {};
}

Result<void> ThinPool::write_super_locked() {
  std::vector<uint8_t> block = encode_super(super_);
  TRY(pwrite_full(fd_.get(), block, (super_.seq % 2) * 4096));
  if (::fdatasync(fd_.get()) != 0) return errno_error("fdatasync");
  return {};
}

Result<void> ThinPool::checkpoint_locked() {
  if (broken_)
    return make_error(ErrorCode::kIo, "thin pool {}: metadata write failed earlier", path_);
  if (::fdatasync(fd_.get()) != 0) return errno_error("thin pool " + path_ + ": fdatasync");
  std::vector<uint8_t> data = encode_checkpoint();
  if (data.size() > layout_.ckpt_bytes)
    return make_error(ErrorCode::kTooLarge,
                      "thin pool {}: metadata space full ({} of {} bytes); remove snapshots", path_,
                      data.size(), layout_.ckpt_bytes);
  Super next = super_;
  next.seq = super_.seq + 1;
  next.active = 1 - super_.active;
  next.ckpt_len = data.size();
  next.ckpt_crc = crc(data);
  next.journal_gen = next.seq;
  Result<void> w = pwrite_full(fd_.get(), data, layout_.ckpt_off[next.active]);
  if (w && ::fdatasync(fd_.get()) != 0) w = errno_error("fdatasync");
  if (w) {
    Super old = super_;
    super_ = next;
    w = write_super_locked();
    if (!w) super_ = old;
  }
  if (!w) {
    broken_ = true;
    return std::unexpected(
        std::move(w.error()).with_context("thin pool " + path_ + ": checkpoint"));
  }
  jbuf_.clear();
  journal_pos_ = 0;
  journal_seq_ = 0;
  release_pending();
  return {};
}

}  // namespace vireo::storage
