#pragma once
// Helpers for writing cgroup control files and for the v1 → v2 value conversions that
// cgroup_resources.cc uses.
#include <cstdint>
#include <filesystem>
#include <string>

#include "base/result.h"

namespace vireo::container {

// Writes value to dir/file in one write(2), as cgroupfs requires.
[[nodiscard]] Result<void> write_cgroup_file(const std::filesystem::path& dir,
                                             const std::string& file, const std::string& value);

// cpu.shares (2..262144) → cpu.weight (1..10000), the formula runc and crun use.
uint64_t cpu_shares_to_weight(uint64_t shares);
// blkio.weight (10..1000) → io.weight (1..10000).
uint64_t blkio_weight_to_io_weight(uint64_t weight);

}  // namespace vireo::container
