#pragma once
// RawFile: a BlockDevice over a plain file or block device, byte for byte. Thread-safe: every
// operation is a positioned system call on one shared descriptor.
#include <filesystem>
#include <memory>

#include "base/fd.h"
#include "storage/block_device.h"

namespace vireo::storage {

enum class OpenMode { kReadOnly, kReadWrite };

class RawFile final : public BlockDevice {
 public:
  [[nodiscard]] static Result<std::unique_ptr<RawFile>> open(const std::filesystem::path& path,
                                                             OpenMode mode);
  // Creates (or truncates) a sparse file of the given size.
  [[nodiscard]] static Result<void> create(const std::filesystem::path& path, uint64_t size);

  uint64_t size() const override { return size_; }
  bool read_only() const override { return read_only_; }
  Result<void> read(std::span<uint8_t> buf, uint64_t offset) override;
  Result<void> write(std::span<const uint8_t> buf, uint64_t offset) override;
  Result<void> flush() override;
  Result<void> trim(uint64_t length, uint64_t offset) override;
  Result<void> write_zeroes(uint64_t length, uint64_t offset, ZeroMode mode,
                            ZeroSpeed speed) override;
  Result<std::vector<Extent>> block_status(uint64_t length, uint64_t offset) override;

 private:
  RawFile(Fd fd, uint64_t size, bool read_only, std::string path)
      : fd_(std::move(fd)), size_(size), read_only_(read_only), path_(std::move(path)) {}
  Result<void> check_writable(uint64_t length, uint64_t offset) const;

  Fd fd_;
  uint64_t size_;
  bool read_only_;
  std::string path_;
};

}  // namespace vireo::storage
