// qcow2 data path: read, write (in place or allocating), discard, zeroing, block status.
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "storage/io.h"
#include "storage/qcow2/qcow2.h"

namespace vireo::storage {

using namespace qcow2;
using Kind = ClusterMapping::Kind;

namespace {

// Data clusters may end past the end of the file (the last one written partially); the
// missing tail reads as zeroes, as in qemu.
Result<void> pread_zero_tail(int fd, std::span<uint8_t> buf, uint64_t offset) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pread(fd, buf.data() + done, buf.size() - done, off_t(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(fmt::format("read {:#x} bytes at {:#x}", buf.size(), offset));
    if (n == 0) break;
    done += size_t(n);
  }
  std::memset(buf.data() + done, 0, buf.size() - done);
  return {};
}

bool needs_allocation(const ClusterMapping& m) {
  return !(m.kind == Kind::kNormal && m.copied);
}

}  // namespace

Result<void> Qcow2::check_writable(uint64_t length, uint64_t offset) const {
  if (!writable_) return make_error(ErrorCode::kPermissionDenied, "{}: read-only", where());
  if (corrupt_) return make_error(ErrorCode::kConflict, "{}: image is marked corrupt", where());
  return with_context(check_range(length, offset, size_), where());
}

Result<void> Qcow2::read_backing(uint64_t guest_offset, std::span<uint8_t> dst) {
  uint64_t have = 0;
  if (backing_ && guest_offset < backing_->size()) {
    have = std::min<uint64_t>(dst.size(), backing_->size() - guest_offset);
    TRY_CTX(backing_->read(dst.first(have), guest_offset), "read backing file");
  }
  std::memset(dst.data() + have, 0, dst.size() - have);
  return {};
}

Result<void> Qcow2::read_compressed(const Mapping& m, std::span<uint8_t> cluster) {
  std::vector<uint8_t> in(m.compressed_size);
  TRY_CTX(pread_zero_tail(fd_.get(), in, m.host_offset), "read compressed cluster");
  z_stream z{};
  if (inflateInit2(&z, -12) != Z_OK) return make_error(ErrorCode::kInternal, "inflateInit2");
  z.next_in = in.data();
  z.avail_in = uInt(in.size());
  z.next_out = cluster.data();
  z.avail_out = uInt(cluster.size());
  int rc = inflate(&z, Z_FINISH);
  bool full = z.avail_out == 0;
  inflateEnd(&z);
  if ((rc != Z_STREAM_END && rc != Z_BUF_ERROR) || !full)
    return make_error(ErrorCode::kIo, "corrupt compressed cluster at {:#x}", m.host_offset);
  return {};
}

// Reads part of one guest cluster whose mapping is m.
Result<void> Qcow2::read_cluster_part(const Mapping& m, uint64_t guest_offset,
                                      std::span<uint8_t> dst) {
  switch (m.kind) {
    case Kind::kUnallocated:
      return read_backing(guest_offset, dst);
    case Kind::kZero:
      std::memset(dst.data(), 0, dst.size());
      return {};
    case Kind::kNormal:
      return pread_zero_tail(fd_.get(), dst, m.host_offset + guest_offset % cluster_size_);
    case Kind::kCompressed: {
      std::vector<uint8_t> cluster(cluster_size_);
      TRY(read_compressed(m, cluster));
      std::memcpy(dst.data(), cluster.data() + guest_offset % cluster_size_, dst.size());
      return {};
    }
  }
  return {};
}

Result<void> Qcow2::read(std::span<uint8_t> buf, uint64_t offset) {
  TRY_CTX(check_range(buf.size(), offset, size_), "{}", where());
  std::shared_lock lock(mu_);
  uint64_t pos = offset, end = offset + buf.size();
  std::optional<Mapping> next;
  while (pos < end) {
    uint64_t cluster = pos / cluster_size_;
    Mapping m = next ? *next : TRY_CTX(lookup(cluster), "{}", where());
    next.reset();
    uint64_t n = std::min(cluster_size_ - pos % cluster_size_, end - pos);
    // Coalesce clusters that are contiguous in the file into one pread.
    while (m.kind == Kind::kNormal && pos + n < end) {
      Mapping m2 = TRY_CTX(lookup(cluster + 1), "{}", where());
      uint64_t want =
          m.host_offset + (pos + n) / cluster_size_ * cluster_size_ - cluster * cluster_size_;
      if (m2.kind != Kind::kNormal || m2.host_offset != want) {
        next = m2;
        break;
      }
      ++cluster;
      n += std::min(cluster_size_, end - pos - n);
    }
    auto dst = buf.subspan(pos - offset, n);
    // For a coalesced run of normal clusters this one pread covers the whole run.
    TRY_CTX(read_cluster_part(m, pos, dst), "{}", where());
    pos += n;
  }
  return {};
}

// Writes buf if every cluster it touches is allocated and owned by this image alone; returns
// false (writing nothing) otherwise.
Result<bool> Qcow2::write_in_place(std::span<const uint8_t> buf, uint64_t offset) {
  uint64_t first = offset / cluster_size_;
  uint64_t last = (offset + buf.size() - 1) / cluster_size_;
  std::vector<uint64_t> hosts;
  hosts.reserve(last - first + 1);
  for (uint64_t c = first; c <= last; ++c) {
    Mapping m = TRY_CTX(lookup(c), "{}", where());
    if (needs_allocation(m) || metadata_clusters_.count(m.host_offset / cluster_size_))
      return false;
    hosts.push_back(m.host_offset);
  }
  uint64_t pos = offset, end = offset + buf.size();
  size_t i = 0;
  while (pos < end) {
    uint64_t host = hosts[i] + pos % cluster_size_;
    uint64_t n = std::min(cluster_size_ - pos % cluster_size_, end - pos);
    while (pos + n < end && hosts[i + 1] == hosts[i] + cluster_size_) {
      ++i;
      n += std::min(cluster_size_, end - pos - n);
    }
    ++i;
    TRY_CTX(pwrite_full(fd_.get(), buf.subspan(pos - offset, n), host), "{}", where());
    pos += n;
  }
  return true;
}

Result<void> Qcow2::write(std::span<const uint8_t> buf, uint64_t offset) {
  TRY(check_writable(buf.size(), offset));
  if (buf.empty()) return {};
  {
    std::shared_lock lock(mu_);
    if (TRY(write_in_place(buf, offset))) return {};
  }
  std::unique_lock lock(mu_);
  return with_context(write_allocating(buf, offset), where());
}

Result<void> Qcow2::write_allocating(std::span<const uint8_t> buf, uint64_t offset) {
  uint64_t pos = offset;
  while (pos < offset + buf.size()) pos += TRY(write_run(buf.subspan(pos - offset), pos));
  return {};
}

// Writes the start of data at guest offset pos: either in place into one owned cluster, or
// into a run of newly allocated clusters within one L2 table. Returns the bytes written.
Result<uint64_t> Qcow2::write_run(std::span<const uint8_t> data, uint64_t pos) {
  uint64_t g = pos / cluster_size_;
  Mapping m = TRY(lookup(g));
  if (!needs_allocation(m)) {
    uint64_t n = std::min<uint64_t>(cluster_size_ - pos % cluster_size_, data.size());
    TRY(check_data_write(m.host_offset, cluster_size_));
    TRY(pwrite_full(fd_.get(), data.first(n), m.host_offset + pos % cluster_size_));
    return n;
  }
  uint64_t l2e = h_.l2_entries();
  uint64_t l2 = TRY(writable_l2(g / l2e));
  uint64_t end = pos + data.size();
  uint64_t last = std::min((end - 1) / cluster_size_, (g / l2e + 1) * l2e - 1);
  std::vector<Mapping> olds{TRY(lookup(g))};
  while (g + olds.size() <= last) {
    Mapping next = TRY(lookup(g + olds.size()));
    if (!needs_allocation(next)) break;
    olds.push_back(next);
  }
  uint64_t k = olds.size();
  uint64_t host = TRY(allocate_clusters(k));
  end = std::min(end, (g + k) * cluster_size_);
  std::vector<uint8_t> tmp;
  std::vector<uint64_t> entries(k);
  for (uint64_t i = 0; i < k; ++i) {
    uint64_t cstart = (g + i) * cluster_size_;
    uint64_t a = std::max(cstart, pos), b = std::min(cstart + cluster_size_, end);
    entries[i] = (host + i * cluster_size_) | kFlagCopied;
    if (a == cstart && b == cstart + cluster_size_) {
      // Whole clusters: write straight from the caller's buffer, merged with the following.
      uint64_t j = i;
      while (j + 1 < k && (g + j + 2) * cluster_size_ <= end) {
        ++j;
        entries[j] = (host + j * cluster_size_) | kFlagCopied;
      }
      uint64_t bytes = (j - i + 1) * cluster_size_;
      TRY(pwrite_full(fd_.get(), data.subspan(a - pos, bytes), host + i * cluster_size_));
      i = j;
      continue;
    }
    tmp.resize(cluster_size_);
    TRY(read_cluster_part(olds[i], cstart, tmp));
    std::memcpy(tmp.data() + (a - cstart), data.data() + (a - pos), b - a);
    TRY(pwrite_full(fd_.get(), tmp, host + i * cluster_size_));
  }
  TRY(set_l2_entries(l2, g % l2e, entries));
  for (const Mapping& old : olds) TRY(release(old));
  return end - pos;
}

Result<void> Qcow2::flush() {
  if (!writable_) return {};
  if (::fdatasync(fd_.get()) != 0) return errno_error(where() + ": flush");
  return {};
}

// Sets count clusters from guest cluster first to entry (0, or the zero flag), dropping what
// they referenced. Caller holds mu_ exclusively.
Result<void> Qcow2::set_clusters(uint64_t first, uint64_t count, uint64_t entry) {
  uint64_t l2e = h_.l2_entries();
  for (uint64_t g = first; g < first + count;) {
    uint64_t n = std::min(first + count - g, l2e - g % l2e);
    uint64_t l1_index = g / l2e;
    if ((l1_[l1_index] & kOffsetMask) == 0 && entry == 0) {
      g += n;
      continue;
    }
    std::vector<Mapping> olds;
    bool changed = false;
    for (uint64_t i = 0; i < n; ++i) {
      olds.push_back(TRY(lookup(g + i)));
      const Mapping& o = olds.back();
      changed |= entry == 0 ? o.kind != Kind::kUnallocated
                            : !(o.kind == Kind::kZero && o.host_offset == 0);
    }
    if (changed) {
      uint64_t l2 = TRY(writable_l2(l1_index));
      std::vector<uint64_t> entries(n, entry);
      TRY(set_l2_entries(l2, g % l2e, entries));
      for (const Mapping& o : olds) TRY(release(o));
    }
    g += n;
  }
  return {};
}

Result<void> Qcow2::trim(uint64_t length, uint64_t offset) {
  TRY(check_writable(length, offset));
  uint64_t end = offset + length;
  uint64_t first = (offset + cluster_size_ - 1) / cluster_size_;
  // The image's last cluster counts as whole when the range reaches the end of the image.
  uint64_t last = end == size_ ? (end + cluster_size_ - 1) / cluster_size_ : end / cluster_size_;
  if (last <= first) return {};
  // With a backing file a hole would expose the backing data; a zero cluster does not (v3).
  uint64_t entry = backing_ && h_.version >= 3 ? kFlagZero : 0;
  std::unique_lock lock(mu_);
  return with_context(set_clusters(first, last - first, entry), where());
}

Result<void> Qcow2::zero_partial(uint64_t length, uint64_t offset) {
  if (length == 0) return {};
  std::vector<uint8_t> zero(length, 0);
  return write(zero, offset);
}

Result<void> Qcow2::write_zeroes(uint64_t length, uint64_t offset, ZeroMode mode, ZeroSpeed speed) {
  TRY(check_writable(length, offset));
  uint64_t end = offset + length;
  uint64_t first = (offset + cluster_size_ - 1) / cluster_size_;
  uint64_t last = end == size_ ? (end + cluster_size_ - 1) / cluster_size_ : end / cluster_size_;
  bool cheap = h_.version >= 3 || !backing_;
  if (last <= first || !cheap) {
    if (speed == ZeroSpeed::kFastOnly)
      return make_error(ErrorCode::kUnavailable, "{}: zeroing this range needs writing data",
                        where());
    return zero_partial(length, offset);
  }
  uint64_t head = first * cluster_size_ - offset;
  uint64_t tail_start = std::min(last * cluster_size_, end);
  if (speed == ZeroSpeed::kFastOnly && (head > 0 || tail_start < end))
    return make_error(ErrorCode::kUnavailable, "{}: range is not cluster aligned", where());
  TRY(zero_partial(head, offset));
  TRY(zero_partial(end - tail_start, tail_start));
  (void)mode;  // zero clusters are never preallocated here: reading them needs no data
  std::unique_lock lock(mu_);
  return with_context(set_clusters(first, last - first, h_.version >= 3 ? kFlagZero : 0), where());
}

Result<std::vector<Extent>> Qcow2::block_status(uint64_t length, uint64_t offset) {
  TRY_CTX(check_range(length, offset, size_), "{}", where());
  constexpr size_t kMaxExtents = 1024;
  std::vector<Extent> out;
  auto add = [&](uint64_t n, uint32_t flags) {
    if (!out.empty() && out.back().flags == flags)
      out.back().length += n;
    else
      out.push_back({n, flags});
  };
  std::shared_lock lock(mu_);
  uint64_t pos = offset, end = offset + length;
  while (pos < end && out.size() < kMaxExtents) {
    Mapping m = TRY_CTX(lookup(pos / cluster_size_), "{}", where());
    uint64_t n = std::min(cluster_size_ - pos % cluster_size_, end - pos);
    if (m.kind == Kind::kUnallocated && backing_ && pos < backing_->size()) {
      n = std::min(n, backing_->size() - pos);
      auto sub = TRY(backing_->block_status(n, pos));
      uint64_t got = 0;
      for (const Extent& e : sub) {
        uint64_t take = std::min(e.length, n - got);
        add(take, e.flags);
        got += take;
        if (got == n) break;
      }
      if (got == 0) break;
      pos += got;
      continue;
    }
    uint32_t flags = 0;
    if (m.kind == Kind::kUnallocated) flags = Extent::kHole | Extent::kZero;
    if (m.kind == Kind::kZero) flags = Extent::kZero | (m.host_offset ? 0 : Extent::kHole);
    add(n, flags);
    pos += n;
  }
  if (out.empty()) out.push_back({0, 0});
  return out;
}

}  // namespace vireo::storage
