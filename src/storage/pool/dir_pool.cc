// DirPool: volumes as files in a directory: NAME.raw or NAME.qcow2, plus NAME.meta.json for
// snapshots and clones (read-only flag, origin). Snapshots and clones are reflinks where the
// file system has them (O(1)), else sparse copies (data segments only).
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>

#include "base/file.h"
#include "base/strings.h"
#include "storage/io.h"
#include "storage/pool/dir_pool.h"
#include "storage/qcow2/qcow2.h"
#include "storage/raw_file.h"

namespace vireo::storage {
namespace {

namespace fs = std::filesystem;

const char* extension(VolumeFormat f) {
  return f == VolumeFormat::kQcow2 ? ".qcow2" : ".raw";
}

// Copies the data segments of src into the new file dst (same size, holes kept).
Result<void> sparse_copy(int in, int out, uint64_t size) {
  if (::ioctl(out, FICLONE, in) == 0) return {};
  if (::ftruncate(out, off_t(size)) != 0) return errno_error("truncate");
  off_t pos = 0;
  std::vector<uint8_t> buf(1 << 20);
  while (uint64_t(pos) < size) {
    off_t data = ::lseek(in, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      return errno_error("seek data");
    }
    off_t hole = ::lseek(in, data, SEEK_HOLE);
    if (hole < 0) return errno_error("seek hole");
    for (off_t at = data; at < hole;) {
      size_t n = size_t(std::min<off_t>(hole - at, off_t(buf.size())));
      TRY(pread_full(in, std::span(buf).first(n), uint64_t(at)));
      TRY(pwrite_full(out, std::span<const uint8_t>(buf).first(n), uint64_t(at)));
      at += off_t(n);
    }
    pos = hole;
  }
  if (::fsync(out) != 0) return errno_error("fsync");
  return {};
}

}  // namespace

DirPool::DirPool(PoolConfig config) : Pool(std::move(config)) {}

std::shared_ptr<Qcow2> DirPool::live_qcow2(const std::string& name) const {
  auto it = qcow2_open_.find(name);
  return it == qcow2_open_.end() ? nullptr : it->second.lock();
}

Result<std::pair<fs::path, VolumeFormat>> DirPool::find(const std::string& name) const {
  TRY(validate_name(name, "volume"));
  for (VolumeFormat f : {VolumeFormat::kRaw, VolumeFormat::kQcow2}) {
    fs::path p = config_.path / (name + extension(f));
    struct stat st {};
    if (::lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode)) return std::pair{p, f};
  }
  return make_error(ErrorCode::kNotFound, "volume {} not found in pool {}", name, config_.name);
}

Result<VolumeInfo> DirPool::info(const std::string& name) const {
  auto [path, format] = TRY(find(name));
  VolumeInfo v;
  v.name = name;
  v.format = format;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno_error("stat " + path.string());
  v.allocated = uint64_t(st.st_blocks) * 512;
  v.size = uint64_t(st.st_size);
  if (format == VolumeFormat::kQcow2) {
    if (std::shared_ptr<Qcow2> live = live_qcow2(name)) {
      v.size = live->size();
    } else {
      auto img = TRY(Qcow2::open(
          path, {.mode = OpenMode::kReadOnly, .open_backing = false, .l2_cache_bytes = 1 << 20}));
      v.size = img->size();
    }
  }
  if (Result<std::string> meta = read_file(config_.path / (name + ".meta.json"))) {
    if (Result<Json> j = parse_json(*meta); j && j->is_object()) {
      v.read_only = j->value("read_only", false);
      v.origin = j->value("origin", "");
    }
  }
  return v;
}

Result<PoolUsage> DirPool::usage() {
  struct statvfs sv {};
  if (::statvfs(config_.path.c_str(), &sv) != 0)
    return errno_error("statvfs " + config_.path.string());
  PoolUsage u;
  u.capacity = uint64_t(sv.f_blocks) * sv.f_frsize;
  for (const VolumeInfo& v : TRY(volumes())) {
    u.used += v.allocated;
    u.virtual_bytes += v.size;
    ++u.volumes;
  }
  return u;
}

Result<void> DirPool::create_volume(const std::string& name, uint64_t size, VolumeFormat format) {
  TRY(validate_name(name, "volume"));
  if (find(name)) return make_error(ErrorCode::kAlreadyExists, "volume {} exists", name);
  if (size == 0 || size % 512 || size > (uint64_t(1) << 50))
    return make_error(ErrorCode::kInvalidArgument,
                      "volume size {} must be a non-zero multiple of 512 bytes", size);
  fs::path path = config_.path / (name + extension(format));
  if (format == VolumeFormat::kQcow2) return Qcow2::create(path, {.size = size});
  Fd fd(::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600));
  if (!fd) return errno_error("create " + path.string());
  if (::ftruncate(fd.get(), off_t(size)) != 0) {
    auto e = errno_error("resize " + path.string());
    ::unlink(path.c_str());
    return e;
  }
  return {};
}

Result<void> DirPool::remove_volume(const std::string& name) {
  auto [path, format] = TRY(find(name));
  if (::unlink(path.c_str()) != 0) return errno_error("remove " + path.string());
  ::unlink((config_.path / (name + ".meta.json")).c_str());
  qcow2_open_.erase(name);
  return {};
}

Result<void> DirPool::resize_volume(const std::string& name, uint64_t size) {
  VolumeInfo v = TRY(info(name));
  if (v.read_only) return make_error(ErrorCode::kConflict, "volume {} is a snapshot", name);
  if (size == 0 || size % 512 || size > (uint64_t(1) << 50))
    return make_error(ErrorCode::kInvalidArgument,
                      "volume size {} must be a non-zero multiple of 512 bytes", size);
  auto [path, format] = TRY(find(name));
  if (format == VolumeFormat::kQcow2) {
    // Through the open device when there is one: it alone may change the file's tables.
    std::shared_ptr<Qcow2> q = live_qcow2(name);
    if (!q) q = TRY(Qcow2::open(path));
    return with_context(q->resize(size), "resize volume " + name);
  }
  if (::truncate(path.c_str(), off_t(size)) != 0) return errno_error("resize " + path.string());
  return {};
}

Result<void> DirPool::copy_volume(const std::string& src, const std::string& dst,
                                  VolumeAccess access) {
  TRY(validate_name(dst, "volume"));
  if (find(dst)) return make_error(ErrorCode::kAlreadyExists, "volume {} exists", dst);
  auto [from, format] = TRY(find(src));
  fs::path to = config_.path / (dst + extension(format));
  Fd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return errno_error("open " + from.string());
  Fd out(::open(to.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600));
  if (!out) return errno_error("create " + to.string());
  uint64_t size = TRY(file_size(in.get()));
  if (Result<void> r = sparse_copy(in.get(), out.get(), size); !r) {
    ::unlink(to.c_str());
    return std::unexpected(std::move(r.error()).with_context("copy " + from.string()));
  }
  Json meta = {{"read_only", access == VolumeAccess::kReadOnly}, {"origin", src}};
  if (Result<void> r = write_file_atomic(config_.path / (dst + ".meta.json"), meta.dump()); !r) {
    ::unlink(to.c_str());
    return r;
  }
  return {};
}

// The copy goes to a hidden temp file first, then one rename replaces the volume's file: a
// crash leaves the old content or the snapshot's, never a mix.
Result<void> DirPool::restore_volume(const std::string& name, const std::string& snapshot) {
  VolumeInfo v = TRY(info(name));
  if (v.read_only) return make_error(ErrorCode::kConflict, "volume {} is a snapshot", name);
  VolumeInfo s = TRY(info(snapshot));
  if (!s.read_only)
    return make_error(ErrorCode::kInvalidArgument, "volume {} is not a snapshot", snapshot);
  if (s.format != v.format)
    return make_error(ErrorCode::kConflict, "snapshot {} is {}, volume {} is {}", snapshot,
                      to_string(s.format), name, to_string(v.format));
  auto [to, format] = TRY(find(name));
  auto [from, snap_format] = TRY(find(snapshot));
  const fs::path tmp = config_.path / ("." + name + ".restore");
  ::unlink(tmp.c_str());
  Fd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return errno_error("open " + from.string());
  Fd out(::open(tmp.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600));
  if (!out) return errno_error("create " + tmp.string());
  uint64_t size = TRY(file_size(in.get()));
  Result<void> r = sparse_copy(in.get(), out.get(), size);
  if (r && ::fsync(out.get()) != 0) r = errno_error("fsync " + tmp.string());
  if (r && ::rename(tmp.c_str(), to.c_str()) != 0) r = errno_error("rename over " + to.string());
  if (!r) {
    ::unlink(tmp.c_str());
    return std::unexpected(std::move(r.error()).with_context("restore " + name));
  }
  qcow2_open_.erase(name);  // the open instance belongs to the replaced file
  return {};
}

Result<std::vector<VolumeInfo>> DirPool::volumes() {
  std::vector<VolumeInfo> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(config_.path, ec)) {
    std::string file = entry.path().filename().string();
    std::string ext = entry.path().extension().string();
    if (ext != ".raw" && ext != ".qcow2") continue;
    std::string name = entry.path().stem().string();
    if (!validate_name(name, "volume")) continue;
    Result<VolumeInfo> v = info(name);
    if (v) out.push_back(std::move(*v));
  }
  if (ec) return make_error(ErrorCode::kIo, "list {}: {}", config_.path.string(), ec.message());
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.name < b.name; });
  return out;
}

Result<std::shared_ptr<BlockDevice>> DirPool::open_volume(const std::string& name) {
  VolumeInfo v = TRY(info(name));
  auto [path, format] = TRY(find(name));
  OpenMode mode = v.read_only ? OpenMode::kReadOnly : OpenMode::kReadWrite;
  if (format == VolumeFormat::kQcow2) {
    std::shared_ptr<Qcow2> q = live_qcow2(name);
    if (!q || q->read_only() != v.read_only) {
      q = TRY(Qcow2::open(path, {.mode = mode}));
      qcow2_open_[name] = q;
    }
    return std::shared_ptr<BlockDevice>(std::move(q));
  }
  std::shared_ptr<BlockDevice> d = TRY(RawFile::open(path, mode));
  return d;
}

Result<PoolCheck> DirPool::check() {
  PoolCheck c;
  for (const VolumeInfo& v : TRY(volumes())) {
    if (v.format != VolumeFormat::kQcow2) continue;
    auto [path, format] = TRY(find(v.name));
    // The open device checks under its own lock; a second reader could see a half-done write.
    std::shared_ptr<Qcow2> img = live_qcow2(v.name);
    if (!img) {
      auto opened = Qcow2::open(path, {.mode = OpenMode::kReadOnly});
      if (!opened) {
        ++c.errors;
        c.messages.push_back(v.name + ": " + opened.error().message());
        continue;
      }
      img = std::move(*opened);
    }
    Result<Qcow2CheckResult> r = img->check();
    if (!r) {
      ++c.errors;
      c.messages.push_back(v.name + ": " + r.error().message());
      continue;
    }
    c.errors += r->corruptions;
    if (r->leaks) c.messages.push_back(fmt::format("{}: {} leaked clusters", v.name, r->leaks));
    for (const std::string& m : r->messages) c.messages.push_back(v.name + ": " + m);
  }
  return c;
}

}  // namespace vireo::storage
