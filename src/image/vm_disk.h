#pragma once
// VM disk images in the image store: a qcow2 or raw disk file kept as the single layer of an OCI
// manifest whose config is Vireo's own (media::kVmConfig: format and virtual size). Such a layer
// is never unpacked; a VM is made from it by copying the blob into a storage volume.
//
// Detection is by content: qcow2 by its magic; raw by an MBR/GPT boot signature or an ext2/3/4
// superblock. A disk from outside is checked before it is stored: a qcow2 must open with Vireo's
// own reader (header, tables), have no backing file (an image is self-contained and must not
// make vireo-storaged read other host files) and no encryption.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "base/json.h"
#include "base/result.h"

namespace vireo::image {

enum class DiskFormat { kRaw, kQcow2 };

std::string_view to_string(DiskFormat f);
// "raw" or "qcow2".
[[nodiscard]] Result<DiskFormat> parse_disk_format(std::string_view text);
// The layer media type of a disk format, and back (kInvalidArgument for anything else).
std::string_view disk_media_type(DiskFormat f);
[[nodiscard]] Result<DiskFormat> disk_format_of_media_type(std::string_view media_type);

// The format a file's first bytes say, or nullopt when they look like neither a qcow2 nor a
// bootable/ext raw disk. Reads at most the first 2 KiB.
[[nodiscard]] Result<std::optional<DiskFormat>> detect_disk_format(
    const std::filesystem::path& file);
// The same on bytes already read (the file's start; shorter input is fine).
std::optional<DiskFormat> detect_disk_format(std::string_view head);

// The config blob of a VM disk image.
struct VmDiskConfig {
  DiskFormat format = DiskFormat::kRaw;
  uint64_t virtual_size = 0;  // bytes the guest sees
  std::string architecture = "amd64";
  std::string created;  // RFC 3339, optional

  Json to_json() const;
};
[[nodiscard]] Result<VmDiskConfig> parse_vm_config(std::string_view json);

// Checks a disk file as format and returns its virtual size: a qcow2 is opened (read-only,
// without its backing file) and refused with a backing file; a raw disk must not be empty.
// Errors name the file and what is wrong with it.
[[nodiscard]] Result<uint64_t> inspect_disk(const std::filesystem::path& file, DiskFormat format);

}  // namespace vireo::image
