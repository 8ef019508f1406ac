#pragma once
// Opening a disk image file by format, for the tools and the NBD exports.
#include <filesystem>
#include <memory>
#include <string_view>

#include "storage/block_device.h"
#include "storage/raw_file.h"

namespace vireo::storage {

enum class ImageFormat { kAuto, kRaw, kQcow2 };

[[nodiscard]] Result<ImageFormat> parse_image_format(std::string_view text);
// kAuto looks for the qcow2 magic; anything else is raw.
[[nodiscard]] Result<std::unique_ptr<BlockDevice>> open_image(const std::filesystem::path& path,
                                                              ImageFormat format, OpenMode mode);

}  // namespace vireo::storage
