#pragma once
// Whole-buffer pread/pwrite that retry on EINTR and short transfers. A read past the end of the
// file is an error (kIo "unexpected end of file"), never silently short.
#include <sys/types.h>

#include <cstdint>
#include <span>

#include "base/result.h"

namespace vireo::storage {

[[nodiscard]] Result<void> pread_full(int fd, std::span<uint8_t> buf, uint64_t offset);
[[nodiscard]] Result<void> pwrite_full(int fd, std::span<const uint8_t> buf, uint64_t offset);
// Deallocates a byte range of a file while keeping its size (reads return zeroes); a file
// system without hole punching keeps the data, which is fine for an advisory discard.
[[nodiscard]] Result<void> punch_hole(int fd, uint64_t offset, uint64_t length);
[[nodiscard]] Result<uint64_t> file_size(int fd);

// Big-endian loads and stores (qcow2 and NBD are both big-endian on the wire and on disk).
inline uint16_t load_be16(const uint8_t* p) {
  return uint16_t(p[0] << 8 | p[1]);
}
inline uint32_t load_be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}
inline uint64_t load_be64(const uint8_t* p) {
  return uint64_t(load_be32(p)) << 32 | load_be32(p + 4);
}
inline void store_be16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}
inline void store_be32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (24 - 8 * i));
}
inline void store_be64(uint8_t* p, uint64_t v) {
  store_be32(p, uint32_t(v >> 32));
  store_be32(p + 4, uint32_t(v));
}

}  // namespace vireo::storage
