// Opening a qcow2 image: header, tables, snapshots, backing chain, and the checks that make a
// corrupt image an error instead of a crash.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "storage/io.h"
#include "storage/qcow2/qcow2.h"

namespace vireo::storage {

using namespace qcow2;

struct Qcow2::Chain {
  std::vector<std::pair<dev_t, ino_t>> files;
};

namespace {

constexpr size_t kMaxChainDepth = 32;
constexpr uint64_t kMaxSnapshotTableBytes = 64ull << 20;

Result<std::vector<uint64_t>> read_table(int fd, uint64_t offset, uint64_t entries) {
  std::vector<uint8_t> raw(entries * 8);
  TRY(pread_full(fd, raw, offset));
  std::vector<uint64_t> out(entries);
  for (uint64_t i = 0; i < entries; ++i) out[i] = load_be64(&raw[i * 8]);
  return out;
}

Result<bool> is_qcow2_file(const std::filesystem::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("open {}", path.string()));
  uint8_t magic[4] = {};
  ssize_t n = ::pread(fd.get(), magic, sizeof magic, 0);
  return n == 4 && load_be32(magic) == kMagic;
}

}  // namespace

Qcow2::~Qcow2() {
  if (writable_) (void)::fdatasync(fd_.get());
}

Result<std::unique_ptr<Qcow2>> Qcow2::open(const std::filesystem::path& path,
                                           const Qcow2OpenOptions& options) {
  bool rw = options.mode == OpenMode::kReadWrite && !options.snapshot;
  Fd fd(::open(path.c_str(), O_CLOEXEC | (rw ? O_RDWR : O_RDONLY)));
  if (!fd) return errno_error(fmt::format("qcow2 {}: open", path.string()));
  return open_fd(std::move(fd), path, options);
}

Result<std::unique_ptr<Qcow2>> Qcow2::open_fd(Fd fd, const std::filesystem::path& path,
                                              const Qcow2OpenOptions& options) {
  Chain chain;
  return open_in_chain(std::move(fd), path, options, chain);
}

Result<std::unique_ptr<Qcow2>> Qcow2::open_in_chain(Fd fd, const std::filesystem::path& path,
                                                    const Qcow2OpenOptions& options, Chain& chain) {
  std::string where = "qcow2 " + path.string();
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_error(where + ": stat");
  for (const auto& [dev, ino] : chain.files)
    if (dev == st.st_dev && ino == st.st_ino)
      return make_error(ErrorCode::kInvalidArgument, "{}: backing file loop", where);
  if (chain.files.size() >= kMaxChainDepth)
    return make_error(ErrorCode::kInvalidArgument, "{}: backing chain longer than {}", where,
                      kMaxChainDepth);
  chain.files.emplace_back(st.st_dev, st.st_ino);

  std::unique_ptr<Qcow2> q(new Qcow2());
  q->fd_ = std::move(fd);
  q->path_ = path.string();
  uint64_t fsize = TRY_CTX(file_size(q->fd_.get()), "{}", where);
  std::vector<uint8_t> first(std::min<uint64_t>(fsize, 1ull << kMaxClusterBits));
  TRY_CTX(pread_full(q->fd_.get(), first, 0), "{}: read header", where);
  q->h_ = TRY_CTX(parse_header(first, fsize), "{}", where);
  q->cluster_size_ = q->h_.cluster_size();
  q->size_ = q->h_.size;
  q->file_end_ = (fsize + q->cluster_size_ - 1) / q->cluster_size_ * q->cluster_size_;
  q->writable_ = options.mode == OpenMode::kReadWrite && !options.snapshot;
  q->l2_cache_capacity_ = std::max<size_t>(16, options.l2_cache_bytes / q->cluster_size_);
  if (q->writable_ && (q->h_.incompatible_features & kIncompatCorrupt))
    return make_error(ErrorCode::kConflict,
                      "{}: image is marked corrupt; open it read-only or repair it", where);
  TRY_CTX(q->load_tables(options), "{}", where);
  if (options.open_backing) TRY_CTX(q->open_backing_file(chain), "{}", where);
  if (q->writable_) TRY_CTX(q->prepare_for_writing(), "{}", where);
  return q;
}

Result<void> Qcow2::load_tables(const Qcow2OpenOptions& options) {
  metadata_clusters_.insert(0);
  auto mark = [&](uint64_t offset, uint64_t bytes) {
    for (uint64_t c = offset / cluster_size_; c * cluster_size_ < offset + bytes; ++c)
      metadata_clusters_.insert(c);
  };
  TRY(load_refcount_table());
  mark(h_.refcount_table_offset, uint64_t(h_.refcount_table_clusters) * cluster_size_);
  mark(h_.l1_table_offset, uint64_t(h_.l1_size) * 8);
  TRY(load_snapshots());
  l1_offset_ = h_.l1_table_offset;
  uint64_t l1_size = h_.l1_size;
  if (options.snapshot) {
    auto it = std::find_if(snapshots_.begin(), snapshots_.end(), [&](const SnapshotInfo& s) {
      return s.id == *options.snapshot || s.name == *options.snapshot;
    });
    if (it == snapshots_.end())
      return make_error(ErrorCode::kNotFound, "no snapshot {}", *options.snapshot);
    l1_offset_ = it->l1_table_offset;
    l1_size = it->l1_size;
    size_ = it->disk_size;
  }
  l1_ = TRY_CTX(read_table(fd_.get(), l1_offset_, l1_size), "read L1 table");
  for (uint64_t i = 0; i < l1_.size(); ++i) {
    uint64_t l2 = l1_[i] & kOffsetMask;
    if (l2 == 0) continue;
    if (l2 % cluster_size_ != 0 || l2 >= file_end_ || metadata_clusters_.count(l2 / cluster_size_))
      return make_error(ErrorCode::kInvalidArgument,
                        "corrupt L1 table: entry {} points at {:#x}, which is not a free cluster "
                        "inside the file",
                        i, l2);
  }
  for (uint64_t e : l1_)
    if (e & kOffsetMask) metadata_clusters_.insert((e & kOffsetMask) / cluster_size_);
  // Snapshot L2 tables (often shared with the active ones) count as metadata too, so that a
  // corrupt active L2 entry can never direct a guest write into them.
  for (const auto& s : snapshots_) {
    auto l1 = TRY_CTX(read_table(fd_.get(), s.l1_table_offset, s.l1_size),
                      "read L1 table of snapshot {}", s.id);
    for (uint64_t e : l1)
      if (e & kOffsetMask) metadata_clusters_.insert((e & kOffsetMask) / cluster_size_);
  }
  return {};
}

Result<void> Qcow2::load_refcount_table() {
  uint64_t entries = uint64_t(h_.refcount_table_clusters) * cluster_size_ / 8;
  refcount_table_ =
      TRY_CTX(read_table(fd_.get(), h_.refcount_table_offset, entries), "read refcount table");
  uint64_t rt_first = h_.refcount_table_offset / cluster_size_;
  uint64_t rt_end = rt_first + h_.refcount_table_clusters;
  for (uint64_t i = 0; i < entries; ++i) {
    uint64_t& e = refcount_table_[i];
    e &= ~0x1ffull;  // bits 0-8 are reserved
    if (e == 0) continue;
    uint64_t c = e / cluster_size_;
    if (e % cluster_size_ != 0 || e >= file_end_ || c == 0 || (c >= rt_first && c < rt_end))
      return make_error(ErrorCode::kInvalidArgument,
                        "corrupt refcount table: entry {} points at {:#x}", i, e);
    metadata_clusters_.insert(c);
  }
  return {};
}

Result<void> Qcow2::load_snapshots() {
  if (h_.nb_snapshots == 0) return {};
  uint64_t bytes = std::min(file_end_ - h_.snapshots_offset, kMaxSnapshotTableBytes);
  std::vector<uint8_t> raw(bytes);
  uint64_t fsize = TRY(file_size(fd_.get()));
  raw.resize(std::min(bytes, fsize - h_.snapshots_offset));
  TRY_CTX(pread_full(fd_.get(), raw, h_.snapshots_offset), "read snapshot table");
  snapshots_ = TRY(parse_snapshot_table(raw, h_, fsize, &snapshot_table_bytes_));
  for (uint64_t c = h_.snapshots_offset / cluster_size_;
       c * cluster_size_ < h_.snapshots_offset + snapshot_table_bytes_; ++c)
    metadata_clusters_.insert(c);
  for (const auto& s : snapshots_) {
    for (uint64_t off = s.l1_table_offset; off < s.l1_table_offset + uint64_t(s.l1_size) * 8;
         off += cluster_size_)
      metadata_clusters_.insert(off / cluster_size_);
  }
  return {};
}

Result<void> Qcow2::open_backing_file(Chain& chain) {
  if (h_.backing_file.empty()) return {};
  std::filesystem::path name = h_.backing_file;
  if (name.string().find(':') != std::string::npos && !std::filesystem::exists(name))
    return make_error(ErrorCode::kInvalidArgument, "backing file {} is not a local file",
                      h_.backing_file);
  if (name.is_relative()) name = std::filesystem::path(path_).parent_path() / name;
  bool qcow2 = h_.backing_format == "qcow2";
  if (h_.backing_format.empty())
    qcow2 = TRY_CTX(is_qcow2_file(name), "backing file");
  else if (h_.backing_format != "raw" && !qcow2)
    return make_error(ErrorCode::kInvalidArgument, "backing format {} is not supported",
                      h_.backing_format);
  if (!qcow2) {
    backing_ = TRY_CTX(RawFile::open(name, OpenMode::kReadOnly), "backing file");
    return {};
  }
  Fd fd(::open(name.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("open backing file {}", name.string()));
  Qcow2OpenOptions options;
  options.mode = OpenMode::kReadOnly;
  backing_ = TRY_CTX(open_in_chain(std::move(fd), name, options, chain), "backing file");
  return {};
}

Result<void> Qcow2::prepare_for_writing() {
  if (h_.version < 3) return {};
  bool dirty = h_.incompatible_features & kIncompatDirty;
  if (dirty) {
    // A dirty image was left by a writer with lazy refcounts: the refcounts may be short.
    Qcow2CheckResult r = TRY(check());
    if (r.corruptions > 0)
      return make_error(ErrorCode::kConflict,
                        "image is dirty and its refcounts are inconsistent ({}); repair it with "
                        "qemu-img check -r all",
                        r.messages.empty() ? std::string() : r.messages.front());
    h_.incompatible_features &= ~kIncompatDirty;
  }
  if (!dirty && h_.autoclear_features == 0) return {};
  // Autoclear bits describe extensions (bitmaps) that this writer does not keep up to date.
  h_.autoclear_features = 0;
  return write_header_features();
}

Result<void> Qcow2::write_header_features() {
  std::vector<uint8_t> fixed = serialize_fixed_header(h_);
  TRY_CTX(pwrite_full(fd_.get(), fixed, 0), "write header");
  return {};
}

}  // namespace vireo::storage
