#pragma once
// BlockDevice: the byte-addressed disk that the NBD server, the VM disks and the pools speak to.
// pread/pwrite style: every call names its own offset, so there is no shared file position.
//
// Thread safety: every method of every implementation may be called concurrently from any
// number of threads. Overlapping concurrent writes leave one of the writes' data (as on a real
// disk); they never corrupt the image's metadata.
#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"

namespace vireo::storage {

// How write_zeroes may achieve zeroes.
enum class ZeroMode {
  kKeepAllocated,  // the range must stay allocated (NBD WRITE_ZEROES with NO_HOLE)
  kMayTrim,        // the range may be deallocated as long as it reads back as zeroes
};
// Whether write_zeroes may fall back to writing zero bytes (slow) or must fail instead.
enum class ZeroSpeed { kAny, kFastOnly };

// Allocation state of a run of bytes, with the meaning of NBD's base:allocation context.
struct Extent {
  static constexpr uint32_t kHole = 1;  // not allocated in this image or its backing chain
  static constexpr uint32_t kZero = 2;  // reads as zeroes
  uint64_t length = 0;
  uint32_t flags = 0;
};

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;

  // Virtual size in bytes; fixed for the life of the object.
  virtual uint64_t size() const = 0;
  virtual bool read_only() const = 0;

  // The range must lie inside [0, size()); otherwise kInvalidArgument and nothing happens.
  [[nodiscard]] virtual Result<void> read(std::span<uint8_t> buf, uint64_t offset) = 0;
  [[nodiscard]] virtual Result<void> write(std::span<const uint8_t> buf, uint64_t offset) = 0;
  // Makes every completed write durable.
  [[nodiscard]] virtual Result<void> flush() = 0;
  // Advisory discard: the range may afterwards read as anything that was once written there or
  // zeroes; devices free whole blocks only.
  [[nodiscard]] virtual Result<void> trim(uint64_t length, uint64_t offset) = 0;
  // kFastOnly fails with kUnavailable (ENOTSUP over NBD) when zeroing would mean writing data.
  [[nodiscard]] virtual Result<void> write_zeroes(uint64_t length, uint64_t offset, ZeroMode mode,
                                                  ZeroSpeed speed) = 0;
  // Extents covering [offset, offset+length), in order, at least one; the last may end past
  // the range. May stop early (the caller asks again for the rest).
  [[nodiscard]] virtual Result<std::vector<Extent>> block_status(uint64_t length,
                                                                 uint64_t offset) = 0;
};

// Checks that [offset, offset+length) lies inside a device of the given size, without overflow.
[[nodiscard]] Result<void> check_range(uint64_t length, uint64_t offset, uint64_t size);

}  // namespace vireo::storage
