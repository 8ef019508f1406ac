#include "storage/pool/thin_pool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_set>

#include "base/endian.h"
#include "base/log.h"
#include "base/strings.h"
#include "storage/io.h"

namespace vireo::storage {
namespace {

uint64_t align_up(uint64_t v, uint64_t a) {
  return (v + a - 1) / a * a;
}

class Payload {
 public:
  Payload& u32(uint32_t v) {
    uint8_t b[4];
    store_be32(b, v);
    out_.insert(out_.end(), b, b + 4);
    return *this;
  }
  Payload& u64(uint64_t v) {
    uint8_t b[8];
    store_be64(b, v);
    out_.insert(out_.end(), b, b + 8);
    return *this;
  }
  Payload& str(const std::string& s) {
    uint8_t b[2];
    store_be16(b, uint16_t(s.size()));
    out_.insert(out_.end(), b, b + 2);
    out_.insert(out_.end(), s.begin(), s.end());
    return *this;
  }
  std::span<const uint8_t> bytes() const { return out_; }

 private:
  std::vector<uint8_t> out_;
};

}  // namespace

Result<void> ThinPool::create(const std::filesystem::path& path,
                              const ThinPoolCreateOptions& options) {
  std::string where = "create thin pool " + path.string();
  uint32_t es = options.extent_size;
  if (es < (64u << 10) || es > (1u << 20) || (es & (es - 1)))
    return make_error(ErrorCode::kInvalidArgument,
                      "{}: extent size must be a power of two from 64 KiB to 1 MiB", where);
  struct stat st {};
  bool block = ::stat(path.c_str(), &st) == 0 && S_ISBLK(st.st_mode);
  Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | (block ? 0 : O_CREAT | O_EXCL), 0600));
  if (!fd) return errno_error(where);
  uint64_t size = options.size;
  if (block) {
    off_t end = ::lseek(fd.get(), 0, SEEK_END);
    if (end < 0) return errno_error(where);
    if (size == 0 || size > uint64_t(end)) size = uint64_t(end);
  }
  // The metadata area: two superblocks, the journal and two checkpoint slots. A mapped extent
  // costs 6 bytes in a leaf and 8 in the refcount list; a slot holds about three full mappings,
  // room for leaves that snapshots made diverge (a full slot is a clear kTooLarge error).
  uint64_t guess_extents = size / es;
  Layout l;
  l.extent_size = es;
  l.journal_off = 8192;
  l.journal_bytes = align_up(std::clamp<uint64_t>(options.journal_bytes, 8 << 10, 1 << 30), 4096);
  l.ckpt_bytes = align_up((8 << 20) + guess_extents * 48, 4096);
  l.ckpt_off[0] = l.journal_off + l.journal_bytes;
  l.ckpt_off[1] = l.ckpt_off[0] + l.ckpt_bytes;
  l.data_off = align_up(l.ckpt_off[1] + l.ckpt_bytes, es);
  if (size < l.data_off + 16ull * es)
    return make_error(ErrorCode::kInvalidArgument, "{}: {} is too small (minimum {})", where,
                      format_bytes(size), format_bytes(l.data_off + 16ull * es));
  l.extents = (size - l.data_off) / es;
  if (l.extents >= (uint64_t(1) << 31))
    return make_error(ErrorCode::kInvalidArgument, "{}: too large", where);
  if (!block && ::ftruncate(fd.get(), off_t(size)) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    return std::unexpected(Error::from_errno(err, where));
  }
  // An empty checkpoint in slot 0, a zeroed journal, superblock 0 (seq 0) and an invalid slot 1.
  ThinPool empty;
  empty.layout_ = l;
  std::vector<uint8_t> ckpt = empty.encode_checkpoint();
  Super s;
  s.layout = l;
  s.ckpt_len = ckpt.size();
  s.ckpt_crc = checksum(ckpt);
  std::vector<uint8_t> zero(l.journal_bytes, 0);
  Result<void> w = pwrite_full(fd.get(), zero, l.journal_off);
  if (w) w = pwrite_full(fd.get(), ckpt, l.ckpt_off[0]);
  if (w) w = pwrite_full(fd.get(), encode_super(s), 0);
  std::vector<uint8_t> blank(4096, 0);
  if (w) w = pwrite_full(fd.get(), blank, 4096);
  if (w && ::fsync(fd.get()) != 0) w = errno_error("fsync");
  if (!w) {
    if (!block) ::unlink(path.c_str());
    return std::unexpected(std::move(w.error()).with_context(where));
  }
  return {};
}

Result<std::shared_ptr<ThinPool>> ThinPool::open(const std::filesystem::path& path) {
  std::string where = "thin pool " + path.string();
  std::shared_ptr<ThinPool> p(new ThinPool());
  p->path_ = path.string();
  p->fd_ = Fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!p->fd_) return errno_error("open " + where);
  struct stat st {};
  if (::fstat(p->fd_.get(), &st) != 0) return errno_error("stat " + where);
  p->regular_file_ = S_ISREG(st.st_mode);
  if (::flock(p->fd_.get(), LOCK_EX | LOCK_NB) != 0)
    return make_error(ErrorCode::kConflict, "{}: in use by another process", where);
  std::vector<uint8_t> sb(8192);
  Result<void> rd = pread_full(p->fd_.get(), sb, 0);
  if (!rd) return make_error(ErrorCode::kInvalidArgument, "{}: too small to be a thin pool", where);
  Result<Super> a = decode_super(std::span(sb).first(4096));
  Result<Super> b = decode_super(std::span(sb).subspan(4096));
  if (!a && !b) return std::unexpected(std::move(a.error()).with_context(where));
  p->super_ = !b ? *a : !a ? *b : (a->seq >= b->seq ? *a : *b);
  p->layout_ = p->super_.layout;
  uint64_t end = uint64_t(::lseek(p->fd_.get(), 0, SEEK_END));
  if (p->layout_.data_off + p->layout_.extents * p->layout_.extent_size > end)
    return make_error(ErrorCode::kIo, "{}: file is shorter ({}) than its superblock says", where,
                      end);
  p->refs_.assign(p->layout_.extents, 0);
  p->pending_flag_.assign(p->layout_.extents, false);
  std::vector<uint8_t> ckpt(p->super_.ckpt_len);
  TRY_CTX(pread_full(p->fd_.get(), ckpt, p->layout_.ckpt_off[p->super_.active]),
          "{}: read checkpoint", where);
  if (checksum(ckpt) != p->super_.ckpt_crc)
    return make_error(ErrorCode::kIo,
                      "{}: corrupt thin pool metadata: checkpoint checksum mismatch", where);
  TRY_CTX(p->decode_checkpoint(ckpt), "{}", where);
  TRY_CTX(p->replay_journal(), "{}", where);
  // A fresh checkpoint starts a new journal generation, so stale records behind the replayed
  // tail can never be mistaken for new ones.
  if (Result<void> c = p->checkpoint_locked(); !c) {
    // A full metadata slot must not lock the pool out: it opens on its journal (the replayed
    // records are durable, new ones follow the tail), so volumes and snapshots can be removed
    // to make room; until then every checkpoint reports the slot full.
    if (c.error().code() != ErrorCode::kTooLarge)
      return std::unexpected(std::move(c.error()).with_context(where));
    spdlog::warn("{}", c.error().message());
  }
  return p;
}

ThinPool::~ThinPool() {
  if (fd_ && !broken_) {
    std::unique_lock lock(mu_);
    (void)checkpoint_locked();
  }
}

Result<void> ThinPool::validate_size(uint64_t size) const {
  if (size == 0 || size % 4096 || size > kMaxVolumeSize)
    return make_error(ErrorCode::kInvalidArgument,
                      "volume size {} must be a non-zero multiple of 4 KiB up to 64 TiB", size);
  return {};
}

uint64_t ThinPool::slots_for(uint64_t size) const {
  uint64_t vexts = (size + layout_.extent_size - 1) / layout_.extent_size;
  return (vexts + kLeafEntries - 1) / kLeafEntries;
}

Result<void> ThinPool::check_mapping_budget(uint64_t add, uint64_t remove) const {
  uint64_t total = 0;
  for (const auto& [id, v] : vols_) total += v.root ? v.root->leaves.size() : 0;
  if (total - std::min(total, remove) + add > kMaxMappingSlots)
    return make_error(ErrorCode::kTooLarge,
                      "thin pool {}: the volumes would total more than {} of virtual size", path_,
                      format_bytes(kMaxMappingSlots * kLeafEntries * layout_.extent_size));
  return {};
}

// --- the mapping ------------------------------------------------------------------------------

Result<ThinPool::Volume*> ThinPool::find(const std::string& name) {
  for (auto& [id, v] : vols_)
    if (v.name == name) return &v;
  return make_error(ErrorCode::kNotFound, "volume {} not found", name);
}

Result<ThinPool::Volume*> ThinPool::find_id(uint32_t id) {
  auto it = vols_.find(id);
  if (it == vols_.end()) return make_error(ErrorCode::kNotFound, "volume was removed");
  return &it->second;
}

const ThinPool::Volume* ThinPool::find_id_const(uint32_t id) const {
  auto it = vols_.find(id);
  return it == vols_.end() ? nullptr : &it->second;
}

uint32_t ThinPool::lookup(const Volume& v, uint64_t vext) const {
  uint64_t li = vext / kLeafEntries;
  if (li >= v.root->leaves.size()) return 0;
  const auto& leaf = v.root->leaves[li];
  return leaf ? leaf->e[vext % kLeafEntries] : 0;
}

bool ThinPool::owned(const Volume& v, uint64_t vext, uint32_t value) const {
  // Shared when any node on the path or the extent itself has another owner.
  return v.root.use_count() == 1 && v.root->leaves[vext / kLeafEntries].use_count() == 1 &&
         refs_[value - 1] == 1;
}

void ThinPool::ref(uint32_t extent) {
  if (refs_[extent]++ == 0) ++used_;
}

void ThinPool::unref(uint32_t extent) {
  if (--refs_[extent] != 0) return;
  --used_;
  pending_flag_[extent] = true;
  pending_.push_back(extent);
}

ThinPool::Leaf& ThinPool::own_leaf(Volume& v, uint64_t li) {
  // Copy-on-write of the path: first the root, then the leaf. Copying a root shares its leaves
  // (the shared_ptr copies count them); copying a leaf adds a reference to each extent.
  if (v.root.use_count() > 1) v.root = std::make_shared<Root>(*v.root);
  std::shared_ptr<Leaf>& slot = v.root->leaves[li];
  if (!slot) {
    slot = std::make_shared<Leaf>();
  } else if (slot.use_count() > 1) {
    slot = std::make_shared<Leaf>(*slot);
    for (uint32_t e : slot->e)
      if (e) ref(e - 1);
  }
  return *slot;
}

void ThinPool::set_mapping(Volume& v, uint64_t vext, uint32_t value) {
  uint64_t li = vext / kLeafEntries;
  if (lookup(v, vext) == value) return;
  Leaf& leaf = own_leaf(v, li);
  uint32_t& slot = leaf.e[vext % kLeafEntries];
  uint32_t old = slot;
  if (value) ref(value - 1);
  slot = value;
  if (old) unref(old - 1);
  v.mapped = v.mapped + (value != 0) - (old != 0);
}

void ThinPool::drop_leaf(std::shared_ptr<Leaf>& leaf) {
  if (leaf && leaf.use_count() == 1)
    for (uint32_t e : leaf->e)
      if (e) unref(e - 1);
  leaf.reset();
}

void ThinPool::drop_root(std::shared_ptr<Root>& root) {
  if (root && root.use_count() == 1)
    for (auto& leaf : root->leaves) drop_leaf(leaf);
  root.reset();
}

std::optional<uint32_t> ThinPool::find_free() {
  uint64_t n = layout_.extents;
  for (uint64_t k = 0; k < n; ++k) {
    uint64_t e = (hint_ + k) % n;
    if (refs_[e] == 0 && !pending_flag_[e]) {
      hint_ = e + 1;
      return uint32_t(e);
    }
  }
  return std::nullopt;
}

Result<uint32_t> ThinPool::allocate() {
  if (std::optional<uint32_t> e = find_free()) return *e;
  // Extents freed since the last commit become reusable once the commit is durable.
  if (!pending_.empty()) {
    TRY(commit_locked());
    if (std::optional<uint32_t> e = find_free()) return *e;
  }
  return std::unexpected(Error(ErrorCode::kTooLarge,
                               fmt::format("thin pool {} is full ({} extents of {} in use)", path_,
                                           used_, format_bytes(layout_.extent_size)),
                               ENOSPC));
}

// --- operations (live and replay) -------------------------------------------------------------

Result<void> ThinPool::do_create(uint32_t id, const std::string& name, uint64_t size,
                                 bool read_only, const std::string& origin) {
  TRY(validate_name(name, "volume"));
  TRY(validate_size(size));
  if (id == 0 || id == UINT32_MAX)
    return make_error(ErrorCode::kInvalidArgument, "volume id {} is out of range", id);
  if (vols_.count(id) || find(name))
    return make_error(ErrorCode::kAlreadyExists, "volume {} exists", name);
  TRY(check_mapping_budget(slots_for(size), 0));
  Volume v;
  v.id = id;
  v.name = name;
  v.size = size;
  v.read_only = read_only;
  v.origin = origin;
  v.root = std::make_shared<Root>();
  uint64_t vexts = (size + layout_.extent_size - 1) / layout_.extent_size;
  v.root->leaves.resize((vexts + kLeafEntries - 1) / kLeafEntries);
  vols_[id] = std::move(v);
  return {};
}

Result<void> ThinPool::do_remove(uint32_t id) {
  Volume* v = TRY(find_id(id));
  drop_root(v->root);
  vols_.erase(id);
  return {};
}

Result<void> ThinPool::do_resize(uint32_t id, uint64_t size) {
  Volume* v = TRY(find_id(id));
  TRY(validate_size(size));
  TRY(check_mapping_budget(slots_for(size), v->root->leaves.size()));
  uint64_t vexts = (size + layout_.extent_size - 1) / layout_.extent_size;
  uint64_t old_vexts = (v->size + layout_.extent_size - 1) / layout_.extent_size;
  size_t leaves = slots_for(size);
  // Only the last kept leaf is cleared entry by entry; leaves past it are dropped whole (their
  // extents lose this leaf's reference unless another root still holds the leaf).
  for (uint64_t e = vexts; e < std::min<uint64_t>(old_vexts, leaves * kLeafEntries); ++e)
    if (lookup(*v, e)) set_mapping(*v, e, 0);
  if (v->root.use_count() > 1) v->root = std::make_shared<Root>(*v->root);
  for (size_t i = leaves; i < v->root->leaves.size(); ++i) {
    if (const Leaf* leaf = v->root->leaves[i].get())
      for (uint32_t e : leaf->e) v->mapped -= e != 0;
    drop_leaf(v->root->leaves[i]);
  }
  v->root->leaves.resize(leaves);
  v->size = size;
  return {};
}

Result<void> ThinPool::do_snapshot(uint32_t src, uint32_t dst, const std::string& name,
                                   bool read_only) {
  Volume* s = TRY(find_id(src));
  std::string origin = s->name;
  TRY(do_create(dst, name, s->size, read_only, origin));
  s = TRY(find_id(src));
  Volume& d = vols_[dst];
  d.root = s->root;  // O(1): the whole mapping is shared until one side writes
  d.mapped = s->mapped;
  return {};
}

Result<void> ThinPool::do_map(uint32_t id, uint64_t vext, uint32_t value) {
  Volume* v = TRY(find_id(id));
  if (vext >= (v->size + layout_.extent_size - 1) / layout_.extent_size)
    return make_error(ErrorCode::kInvalidArgument, "extent {} beyond volume {}", vext, v->name);
  set_mapping(*v, vext, value);
  return {};
}

Result<void> ThinPool::do_restore(uint32_t id, uint32_t snapshot) {
  Volume* s = TRY(find_id(snapshot));
  std::shared_ptr<Root> root = s->root;
  const uint64_t size = s->size, mapped = s->mapped;
  Volume* v = TRY(find_id(id));
  if (v->read_only) return make_error(ErrorCode::kConflict, "volume {} is a snapshot", v->name);
  if (id == snapshot) return {};
  TRY(check_mapping_budget(root->leaves.size(), v->root->leaves.size()));
  // The snapshot's root is held above, so dropping the volume's own never frees what it shares.
  drop_root(v->root);
  v->root = std::move(root);
  v->size = size;
  v->mapped = mapped;
  return {};
}

Result<void> ThinPool::create_volume(const std::string& name, uint64_t size) {
  std::unique_lock lock(mu_);
  uint32_t id = next_id_;
  TRY_CTX(do_create(id, name, size, false, ""), "create volume {}", name);
  ++next_id_;
  append_record(Op::kCreate, Payload().u32(id).u64(size).u32(0).str(name).str("").bytes());
  return commit_locked();
}

Result<void> ThinPool::remove_volume(const std::string& name) {
  std::unique_lock lock(mu_);
  Volume* v = TRY(find(name));
  uint32_t id = v->id;
  TRY(do_remove(id));
  append_record(Op::kRemove, Payload().u32(id).bytes());
  return commit_locked();
}

Result<void> ThinPool::resize_volume(const std::string& name, uint64_t size) {
  std::unique_lock lock(mu_);
  Volume* v = TRY(find(name));
  if (v->read_only) return make_error(ErrorCode::kConflict, "volume {} is a snapshot", name);
  TRY_CTX(do_resize(v->id, size), "resize volume {}", name);
  append_record(Op::kResize, Payload().u32(v->id).u64(size).bytes());
  return commit_locked();
}

Result<void> ThinPool::snapshot(const std::string& src, const std::string& dst,
                                VolumeAccess access) {
  std::unique_lock lock(mu_);
  Volume* s = TRY(find(src));
  uint32_t id = next_id_;
  bool ro = access == VolumeAccess::kReadOnly;
  TRY_CTX(do_snapshot(s->id, id, dst, ro), "snapshot {} as {}", src, dst);
  ++next_id_;
  append_record(Op::kSnapshot, Payload().u32(s->id).u32(id).u32(ro).str(dst).bytes());
  return commit_locked();
}

Result<void> ThinPool::restore(const std::string& name, const std::string& snapshot) {
  std::unique_lock lock(mu_);
  Volume* v = TRY(find(name));
  Volume* s = TRY(find(snapshot));
  if (!s->read_only)
    return make_error(ErrorCode::kInvalidArgument, "volume {} is not a snapshot", snapshot);
  const uint32_t id = v->id, snap = s->id;
  TRY_CTX(do_restore(id, snap), "restore volume {} from {}", name, snapshot);
  append_record(Op::kRestore, Payload().u32(id).u32(snap).bytes());
  return commit_locked();
}

std::vector<ThinVolumeInfo> ThinPool::volumes() const {
  std::shared_lock lock(mu_);
  std::vector<ThinVolumeInfo> out;
  for (const auto& [id, v] : vols_)
    out.push_back({v.name, v.size, v.mapped * layout_.extent_size, v.read_only, v.origin});
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.name < b.name; });
  return out;
}

Result<ThinVolumeInfo> ThinPool::volume(const std::string& name) const {
  for (auto& v : volumes())
    if (v.name == name) return v;
  return make_error(ErrorCode::kNotFound, "volume {} not found", name);
}

ThinPoolStats ThinPool::stats() const {
  std::shared_lock lock(mu_);
  ThinPoolStats s;
  s.extent_size = layout_.extent_size;
  s.extents = layout_.extents;
  s.used_extents = used_;
  s.volumes = vols_.size();
  for (const auto& [id, v] : vols_) s.virtual_bytes += v.size;
  s.metadata_bytes = super_.ckpt_len;
  return s;
}

Result<void> ThinPool::flush() {
  std::unique_lock lock(mu_);
  return commit_locked();
}

void ThinPool::testing_set_refcount(uint32_t extent, uint32_t value) {
  std::unique_lock lock(mu_);
  refs_[extent] = value;
}

ThinCheckResult ThinPool::check() const {
  std::unique_lock lock(mu_);
  ThinCheckResult r;
  auto note = [&r](bool error, std::string msg) {
    if (error) ++r.errors;
    if (r.messages.size() < 20) r.messages.push_back(std::move(msg));
  };
  std::vector<uint32_t> counted(layout_.extents, 0);
  std::unordered_set<const Leaf*> seen;
  for (const auto& [id, v] : vols_) {
    uint64_t vexts = (v.size + layout_.extent_size - 1) / layout_.extent_size;
    uint64_t mapped = 0;
    if (v.root->leaves.size() != (vexts + kLeafEntries - 1) / kLeafEntries)
      note(true, fmt::format("volume {}: mapping has {} leaves for {} extents", v.name,
                             v.root->leaves.size(), vexts));
    for (size_t li = 0; li < v.root->leaves.size(); ++li) {
      const Leaf* leaf = v.root->leaves[li].get();
      if (!leaf) continue;
      bool first = seen.insert(leaf).second;
      for (uint32_t i = 0; i < kLeafEntries; ++i) {
        uint32_t e = leaf->e[i];
        if (!e) continue;
        ++mapped;
        if (li * kLeafEntries + i >= vexts)
          note(true, fmt::format("volume {}: extent {} mapped beyond the volume's end", v.name,
                                 li * kLeafEntries + i));
        if (e > layout_.extents) {
          note(true, fmt::format("volume {}: maps extent {} outside the pool", v.name, e - 1));
        } else if (first) {
          ++counted[e - 1];
        }
      }
    }
    if (mapped != v.mapped)
      note(true, fmt::format("volume {}: accounting says {} extents, mapping has {}", v.name,
                             v.mapped, mapped));
  }
  uint64_t used = 0;
  for (uint64_t e = 0; e < layout_.extents; ++e) {
    used += refs_[e] != 0;
    if (counted[e] != refs_[e])
      note(true, fmt::format("extent {}: refcount {} but {} references", e, refs_[e], counted[e]));
    if (pending_flag_[e] && refs_[e])
      note(true, fmt::format("extent {}: pending free but referenced", e));
  }
  if (used != used_)
    note(true, fmt::format("pool accounting says {} extents used, refcounts say {}", used_, used));
  // The on-disk checkpoint the superblock points at must still match its checksum.
  std::vector<uint8_t> ckpt(super_.ckpt_len);
  if (!pread_full(fd_.get(), ckpt, layout_.ckpt_off[super_.active]) ||
      checksum(ckpt) != super_.ckpt_crc)
    note(true, fmt::format("checkpoint slot {}: checksum mismatch on disk", super_.active));
  std::vector<uint8_t> sb(8192);
  if (pread_full(fd_.get(), sb, 0)) {
    for (int i = 0; i < 2; ++i) {
      Result<Super> s = decode_super(std::span(sb).subspan(i * 4096, 4096));
      if (!s && super_.seq > 0)
        note(false, fmt::format("warning: superblock copy {}: {}", i, s.error().message()));
    }
  }
  return r;
}

}  // namespace vireo::storage
