// ThinVolume: one thin-pool volume as a BlockDevice (what the NBD server serves).
#include <sys/uio.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "base/endian.h"
#include "storage/io.h"
#include "storage/pool/thin_pool.h"

namespace vireo::storage {
namespace {

constexpr size_t kAutoCommitBytes = 1 << 20;

const std::vector<uint8_t>& zeroes() {
  static const std::vector<uint8_t> z(1 << 20, 0);
  return z;
}

}  // namespace

class ThinVolume final : public BlockDevice {
 public:
  ThinVolume(std::shared_ptr<ThinPool> pool, uint32_t id, uint64_t size, bool read_only,
             std::string name)
      : pool_(std::move(pool)),
        id_(id),
        size_(size),
        read_only_(read_only),
        name_(std::move(name)) {}

  uint64_t size() const override { return size_; }
  bool read_only() const override { return read_only_; }
  Result<void> read(std::span<uint8_t> buf, uint64_t offset) override;
  Result<void> write(std::span<const uint8_t> buf, uint64_t offset) override;
  Result<void> flush() override { return pool_->flush(); }
  Result<void> trim(uint64_t length, uint64_t offset) override;
  Result<void> write_zeroes(uint64_t length, uint64_t offset, ZeroMode mode,
                            ZeroSpeed speed) override;
  Result<std::vector<Extent>> block_status(uint64_t length, uint64_t offset) override;

 private:
  Result<void> check_writable(uint64_t length, uint64_t offset) const {
    if (read_only_)
      return make_error(ErrorCode::kPermissionDenied, "thin volume {}: read-only", name_);
    return check_range(length, offset, size_);
  }
  uint64_t es() const { return pool_->layout_.extent_size; }

  std::shared_ptr<ThinPool> pool_;
  uint32_t id_;
  uint64_t size_;
  bool read_only_;
  std::string name_;
};

Result<std::shared_ptr<BlockDevice>> ThinPool::open_volume(const std::string& name) {
  std::shared_lock lock(mu_);
  for (const auto& [id, v] : vols_)
    if (v.name == name)
      return std::make_shared<ThinVolume>(shared_from_this(), id, v.size, v.read_only, v.name);
  return make_error(ErrorCode::kNotFound, "volume {} not found", name);
}

Result<void> ThinVolume::read(std::span<uint8_t> buf, uint64_t offset) {
  TRY(check_range(buf.size(), offset, size_));
  std::shared_lock lock(pool_->mu_);
  ThinPool::Volume* v = TRY(pool_->find_id(id_));
  size_t done = 0;
  // Runs of physically contiguous extents are read with one pread.
  uint64_t run_phys = 0;
  size_t run_start = 0, run_len = 0;
  auto flush_run = [&]() -> Result<void> {
    if (run_len) TRY(pread_full(pool_->fd_.get(), buf.subspan(run_start, run_len), run_phys));
    run_len = 0;
    return {};
  };
  while (done < buf.size()) {
    uint64_t off = offset + done;
    uint64_t within = off % es();
    size_t n = size_t(std::min<uint64_t>(es() - within, buf.size() - done));
    uint32_t e = pool_->lookup(*v, off / es());
    if (!e) {
      TRY(flush_run());
      std::memset(buf.data() + done, 0, n);
    } else {
      uint64_t phys = pool_->extent_offset(e - 1) + within;
      if (run_len && run_phys + run_len == phys) {
        run_len += n;
      } else {
        TRY(flush_run());
        run_phys = phys;
        run_start = done;
        run_len = n;
      }
    }
    done += n;
  }
  return with_context(flush_run(), "thin volume " + name_);
}

Result<void> ThinVolume::write(std::span<const uint8_t> buf, uint64_t offset) {
  TRY(check_writable(buf.size(), offset));
  return pool_->volume_write(id_, buf, offset);
}

namespace {

// Pieces of a request that go to physically contiguous places are written with one pwrite.
class WriteRuns {
 public:
  explicit WriteRuns(int fd) : fd_(fd) {}
  Result<void> add(uint64_t phys, std::span<const uint8_t> data) {
    if (len_ && phys_ + len_ == phys && data_ + len_ == data.data()) {
      len_ += data.size();
      return {};
    }
    TRY(flush());
    phys_ = phys;
    data_ = data.data();
    len_ = data.size();
    return {};
  }
  Result<void> flush() {
    if (len_) TRY(pwrite_full(fd_, std::span(data_, len_), phys_));
    len_ = 0;
    return {};
  }

 private:
  int fd_;
  uint64_t phys_ = 0;
  const uint8_t* data_ = nullptr;
  size_t len_ = 0;
};

}  // namespace

Result<void> ThinPool::volume_write(uint32_t id, std::span<const uint8_t> buf, uint64_t offset) {
  const uint64_t es = layout_.extent_size;
  auto pieces = [&](auto&& fn) -> Result<void> {
    for (size_t done = 0; done < buf.size();) {
      uint64_t off = offset + done;
      size_t n = size_t(std::min<uint64_t>(es - off % es, buf.size() - done));
      TRY(fn(off / es, off % es, buf.subspan(done, n)));
      done += n;
    }
    return {};
  };
  {
    // In place, under the shared lock, when every extent is mapped and not shared.
    std::shared_lock lock(mu_);
    Volume* v = TRY(find_id(id));
    bool in_place = true;
    (void)pieces([&](uint64_t vext, uint64_t, std::span<const uint8_t>) -> Result<void> {
      uint32_t e = lookup(*v, vext);
      in_place = in_place && e && owned(*v, vext, e);
      return {};
    });
    if (in_place) {
      WriteRuns runs(fd_.get());
      TRY(pieces([&](uint64_t vext, uint64_t within, std::span<const uint8_t> d) {
        return runs.add(extent_offset(lookup(*v, vext) - 1) + within, d);
      }));
      return runs.flush();
    }
  }
  std::unique_lock lock(mu_);
  if (broken_)
    return make_error(ErrorCode::kIo, "thin pool {}: metadata write failed earlier", path_);
  Volume* v = TRY(find_id(id));
  uint64_t vexts = (v->size + es - 1) / es;
  WriteRuns runs(fd_.get());
  // New extents are reserved (pending flag) until their data is written; only then are they
  // mapped and journaled, so a commit never makes a mapping durable before its data.
  std::vector<std::pair<uint64_t, uint32_t>> fresh_maps;
  auto finish = [&]() -> Result<void> {
    Result<void> w = runs.flush();
    for (auto [vext, fresh] : fresh_maps) {
      pending_flag_[fresh] = false;
      if (!w) continue;
      set_mapping(*v, vext, fresh + 1);
      uint8_t rec[16];
      store_be32(rec, id);
      store_be64(rec + 4, vext);
      store_be32(rec + 12, fresh + 1);
      append_record(Op::kMap, rec);
    }
    fresh_maps.clear();
    return w;
  };
  Result<void> r = pieces([&](uint64_t vext, uint64_t within,
                              std::span<const uint8_t> data) -> Result<void> {
    if (vext >= vexts)
      return make_error(ErrorCode::kInvalidArgument, "write beyond the end of volume {}", v->name);
    uint32_t old = lookup(*v, vext);
    if (old && owned(*v, vext, old)) return runs.add(extent_offset(old - 1) + within, data);
    std::optional<uint32_t> found = find_free();
    if (!found) {
      TRY(finish());
      found = TRY(allocate());
    }
    uint32_t fresh = *found;
    pending_flag_[fresh] = true;
    fresh_maps.emplace_back(vext, fresh);
    uint64_t dst = extent_offset(fresh);
    if (data.size() == es) return runs.add(dst, data);
    TRY(runs.flush());
    if (old) {
      // Copy-on-write: the shared extent's data around the new bytes.
      std::vector<uint8_t> tmp(es);
      TRY(pread_full(fd_.get(), tmp, extent_offset(old - 1)));
      std::memcpy(tmp.data() + within, data.data(), data.size());
      return pwrite_full(fd_.get(), tmp, dst);
    }
    // A new extent reads as zeroes around the written bytes, whatever it held before.
    const auto& z = zeroes();
    iovec iov[3] = {{const_cast<uint8_t*>(z.data()), within},
                    {const_cast<uint8_t*>(data.data()), data.size()},
                    {const_cast<uint8_t*>(z.data()), es - within - data.size()}};
    ssize_t put = ::pwritev(fd_.get(), iov, 3, off_t(dst));
    if (put == ssize_t(es)) return {};
    if (put < 0) return errno_error("thin pool " + path_ + ": write extent");
    std::vector<uint8_t> tmp(es, 0);
    std::memcpy(tmp.data() + within, data.data(), data.size());
    return pwrite_full(fd_.get(), tmp, dst);
  });
  if (!r) {
    // Nothing new is mapped: the reserved extents go back to the free list.
    for (auto [vext, fresh] : fresh_maps) pending_flag_[fresh] = false;
    return r;
  }
  TRY(finish());
  if (jbuf_.size() > kAutoCommitBytes) TRY(commit_locked());
  return {};
}

Result<void> ThinPool::volume_unmap(uint32_t id, uint64_t first, uint64_t count) {
  std::unique_lock lock(mu_);
  if (broken_)
    return make_error(ErrorCode::kIo, "thin pool {}: metadata write failed earlier", path_);
  Volume* v = TRY(find_id(id));
  for (uint64_t vext = first; vext < first + count; ++vext) {
    // Whole leaves that are not mapped at all are skipped quickly.
    if (vext % kLeafEntries == 0 && vext / kLeafEntries < v->root->leaves.size() &&
        !v->root->leaves[vext / kLeafEntries] && count - (vext - first) >= kLeafEntries) {
      vext += kLeafEntries - 1;
      continue;
    }
    if (!lookup(*v, vext)) continue;
    set_mapping(*v, vext, 0);
    uint8_t rec[16];
    store_be32(rec, id);
    store_be64(rec + 4, vext);
    store_be32(rec + 12, 0);
    append_record(Op::kMap, rec);
  }
  if (jbuf_.size() > kAutoCommitBytes) TRY(commit_locked());
  return {};
}

Result<void> ThinVolume::trim(uint64_t length, uint64_t offset) {
  TRY(check_writable(length, offset));
  uint64_t first = (offset + es() - 1) / es();
  uint64_t end = (offset + length) / es();
  if (offset + length == size_) end = (size_ + es() - 1) / es();  // the volume's last extent
  if (end <= first) return {};
  return pool_->volume_unmap(id_, first, end - first);
}

Result<void> ThinVolume::write_zeroes(uint64_t length, uint64_t offset, ZeroMode mode,
                                      ZeroSpeed speed) {
  TRY(check_writable(length, offset));
  auto write_zero_range = [&](uint64_t len, uint64_t off) -> Result<void> {
    if (len == 0) return {};
    if (speed == ZeroSpeed::kFastOnly)
      return make_error(ErrorCode::kUnavailable, "thin volume {}: zeroing needs writes", name_);
    while (len) {
      size_t n = size_t(std::min<uint64_t>(len, zeroes().size()));
      TRY(write(std::span(zeroes()).first(n), off));
      off += n;
      len -= n;
    }
    return {};
  };
  if (mode == ZeroMode::kKeepAllocated) return write_zero_range(length, offset);
  uint64_t first = (offset + es() - 1) / es();
  uint64_t end = (offset + length) / es();
  if (offset + length == size_) end = (size_ + es() - 1) / es();
  if (end <= first) {
    // Inside one extent: zero it only if it holds data.
    auto st = TRY(block_status(length, offset));
    if (!st.empty() && (st.front().flags & Extent::kZero) && st.front().length >= length) return {};
    return write_zero_range(length, offset);
  }
  uint64_t head = first * es() - offset;
  uint64_t tail_off = std::min(end * es(), size_);
  for (auto [len, off] :
       {std::pair{head, offset}, std::pair{offset + length - tail_off, tail_off}}) {
    if (!len) continue;
    auto st = TRY(block_status(len, off));
    if (!st.empty() && (st.front().flags & Extent::kZero) && st.front().length >= len) continue;
    TRY(write_zero_range(len, off));
  }
  return pool_->volume_unmap(id_, first, end - first);
}

Result<std::vector<Extent>> ThinVolume::block_status(uint64_t length, uint64_t offset) {
  TRY(check_range(length, offset, size_));
  std::shared_lock lock(pool_->mu_);
  ThinPool::Volume* v = TRY(pool_->find_id(id_));
  std::vector<Extent> out;
  uint64_t end = std::min(offset + length, size_);
  uint64_t off = offset;
  size_t steps = 0;
  while (off < end && steps++ < (1u << 20)) {
    uint64_t next = std::min((off / es() + 1) * es(), size_);
    uint32_t flags = pool_->lookup(*v, off / es()) ? 0 : (Extent::kHole | Extent::kZero);
    if (!out.empty() && out.back().flags == flags)
      out.back().length += next - off;
    else
      out.push_back({next - off, flags});
    off = next;
  }
  if (out.empty()) out.push_back({length, 0});
  return out;
}

}  // namespace vireo::storage
