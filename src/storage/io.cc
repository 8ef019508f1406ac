#include "storage/io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "storage/block_device.h"

namespace vireo::storage {

Result<void> check_range(uint64_t length, uint64_t offset, uint64_t size) {
  if (offset > size || length > size - offset)
    return make_error(ErrorCode::kInvalidArgument,
                      "range {:#x}+{:#x} is beyond the end of the device ({:#x})", offset, length,
                      size);
  return {};
}

Result<void> pread_full(int fd, std::span<uint8_t> buf, uint64_t offset) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pread(fd, buf.data() + done, buf.size() - done, off_t(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(fmt::format("read {:#x} bytes at {:#x}", buf.size(), offset));
    }
    if (n == 0)
      return make_error(ErrorCode::kIo, "read {:#x} bytes at {:#x}: unexpected end of file",
                        buf.size(), offset);
    done += size_t(n);
  }
  return {};
}

Result<void> pwrite_full(int fd, std::span<const uint8_t> buf, uint64_t offset) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pwrite(fd, buf.data() + done, buf.size() - done, off_t(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(fmt::format("write {:#x} bytes at {:#x}", buf.size(), offset));
    }
    done += size_t(n);
  }
  return {};
}

Result<void> punch_hole(int fd, uint64_t offset, uint64_t length) {
  if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(offset), off_t(length)) ==
      0)
    return {};
  if (errno == EOPNOTSUPP || errno == ENOSYS) return {};
  return errno_error(fmt::format("punch hole {:#x}+{:#x}", offset, length));
}

Result<uint64_t> file_size(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("stat");
  return uint64_t(st.st_size);
}

}  // namespace vireo::storage
