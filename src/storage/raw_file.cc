#include "storage/raw_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "storage/io.h"

namespace vireo::storage {

Result<std::unique_ptr<RawFile>> RawFile::open(const std::filesystem::path& path, OpenMode mode) {
  int flags = O_CLOEXEC | (mode == OpenMode::kReadOnly ? O_RDONLY : O_RDWR);
  Fd fd(::open(path.c_str(), flags));
  if (!fd) return errno_error(fmt::format("open {}", path.string()));
  // lseek(SEEK_END) also gives the size of a block device, where st_size is 0.
  off_t end = ::lseek(fd.get(), 0, SEEK_END);
  if (end < 0) return errno_error(fmt::format("size of {}", path.string()));
  return std::unique_ptr<RawFile>(
      new RawFile(std::move(fd), uint64_t(end), mode == OpenMode::kReadOnly, path.string()));
}

Result<void> RawFile::create(const std::filesystem::path& path, uint64_t size) {
  Fd fd(::open(path.c_str(), O_CLOEXEC | O_RDWR | O_CREAT | O_TRUNC, 0644));
  if (!fd) return errno_error(fmt::format("create {}", path.string()));
  if (::ftruncate(fd.get(), off_t(size)) != 0)
    return errno_error(fmt::format("resize {}", path.string()));
  return {};
}

Result<void> RawFile::check_writable(uint64_t length, uint64_t offset) const {
  if (read_only_) return make_error(ErrorCode::kPermissionDenied, "{}: read-only", path_);
  return check_range(length, offset, size_);
}

Result<void> RawFile::read(std::span<uint8_t> buf, uint64_t offset) {
  TRY(check_range(buf.size(), offset, size_));
  return pread_full(fd_.get(), buf, offset);
}

Result<void> RawFile::write(std::span<const uint8_t> buf, uint64_t offset) {
  TRY(check_writable(buf.size(), offset));
  return pwrite_full(fd_.get(), buf, offset);
}

Result<void> RawFile::flush() {
  if (read_only_) return {};
  if (::fdatasync(fd_.get()) != 0) return errno_error(fmt::format("{}: flush", path_));
  return {};
}

Result<void> RawFile::trim(uint64_t length, uint64_t offset) {
  TRY(check_writable(length, offset));
  return punch_hole(fd_.get(), offset, length);
}

Result<void> RawFile::write_zeroes(uint64_t length, uint64_t offset, ZeroMode mode,
                                   ZeroSpeed speed) {
  TRY(check_writable(length, offset));
  if (length == 0) return {};
  int how = mode == ZeroMode::kMayTrim ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                                       : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
  if (::fallocate(fd_.get(), how, off_t(offset), off_t(length)) == 0) return {};
  if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
    return errno_error(fmt::format("{}: zero {:#x}+{:#x}", path_, offset, length));
  if (speed == ZeroSpeed::kFastOnly)
    return make_error(ErrorCode::kUnavailable, "{}: no fast zeroing here", path_);
  std::vector<uint8_t> zeroes(std::min<uint64_t>(length, 1 << 20));
  for (uint64_t done = 0; done < length;) {
    uint64_t n = std::min<uint64_t>(zeroes.size(), length - done);
    TRY(pwrite_full(fd_.get(), std::span(zeroes.data(), n), offset + done));
    done += n;
  }
  return {};
}

Result<std::vector<Extent>> RawFile::block_status(uint64_t length, uint64_t offset) {
  TRY(check_range(length, offset, size_));
  std::vector<Extent> out;
  uint64_t end = offset + length;
  uint64_t pos = offset;
  while (pos < end) {
    off_t data = ::lseek(fd_.get(), off_t(pos), SEEK_DATA);
    if (data < 0 && errno != ENXIO) {
      out.push_back({end - pos, 0});  // no SEEK_DATA support: report all as data
      break;
    }
    uint64_t data_start = data < 0 ? size_ : std::min<uint64_t>(uint64_t(data), size_);
    if (data_start > pos) {
      out.push_back({std::min(data_start, end) - pos, Extent::kHole | Extent::kZero});
      pos = data_start;
      continue;
    }
    off_t hole = ::lseek(fd_.get(), off_t(pos), SEEK_HOLE);
    uint64_t hole_start = hole < 0 ? size_ : std::min<uint64_t>(uint64_t(hole), size_);
    if (hole_start <= pos) hole_start = end;
    out.push_back({std::min(hole_start, end) - pos, 0});
    pos = hole_start;
  }
  if (out.empty()) out.push_back({0, 0});
  return out;
}

}  // namespace vireo::storage
