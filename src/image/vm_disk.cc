#include "image/vm_disk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fd.h"
#include "image/manifest.h"
#include "image/media_types.h"
#include "storage/qcow2/qcow2.h"

namespace vireo::image {

namespace {

constexpr size_t kHeadBytes = 2048;
constexpr size_t kMbrSignature = 510;    // 0x55 0xAA
constexpr size_t kGptHeader = 512;       // "EFI PART" in LBA 1
constexpr size_t kExtMagic = 1024 + 56;  // s_magic 0xEF53, little-endian

std::unexpected<Error> invalid_config(std::string_view field, std::string_view what) {
  return make_error(ErrorCode::kInvalidArgument, "invalid VM disk config: {}: {}", field, what);
}

}  // namespace

std::string_view to_string(DiskFormat f) {
  return f == DiskFormat::kQcow2 ? "qcow2" : "raw";
}

Result<DiskFormat> parse_disk_format(std::string_view text) {
  if (text == "qcow2") return DiskFormat::kQcow2;
  if (text == "raw") return DiskFormat::kRaw;
  return make_error(ErrorCode::kInvalidArgument, "disk format '{}': expected qcow2 or raw", text);
}

std::string_view disk_media_type(DiskFormat f) {
  return f == DiskFormat::kQcow2 ? media::kVmDiskQcow2 : media::kVmDiskRaw;
}

Result<DiskFormat> disk_format_of_media_type(std::string_view media_type) {
  if (media_type == media::kVmDiskQcow2) return DiskFormat::kQcow2;
  if (media_type == media::kVmDiskRaw) return DiskFormat::kRaw;
  return make_error(ErrorCode::kInvalidArgument, "'{}' is not a VM disk media type", media_type);
}

std::optional<DiskFormat> detect_disk_format(std::string_view head) {
  auto at = [&](size_t offset, std::string_view bytes) {
    return head.size() >= offset + bytes.size() && head.substr(offset, bytes.size()) == bytes;
  };
  if (at(0, "QFI\xfb")) return DiskFormat::kQcow2;
  if (at(kMbrSignature, "\x55\xaa") || at(kGptHeader, "EFI PART") || at(kExtMagic, "\x53\xef"))
    return DiskFormat::kRaw;
  return std::nullopt;
}

Result<std::optional<DiskFormat>> detect_disk_format(const std::filesystem::path& file) {
  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error("open " + file.string());
  std::string head(kHeadBytes, '\0');
  ssize_t n = ::pread(fd.get(), head.data(), head.size(), 0);
  if (n < 0) return errno_error("read " + file.string());
  head.resize(static_cast<size_t>(n));
  return detect_disk_format(std::string_view(head));
}

Json VmDiskConfig::to_json() const {
  Json j = {{"architecture", architecture},
            {"format", std::string(to_string(format))},
            {"virtual_size", virtual_size}};
  if (!created.empty()) j["created"] = created;
  return j;
}

Result<VmDiskConfig> parse_vm_config(std::string_view json) {
  Json j = TRY_CTX(parse_untrusted_json(json), "invalid VM disk config");
  if (!j.is_object()) return invalid_config("document", "must be a JSON object");
  VmDiskConfig c;
  auto format = j.find("format");
  if (format == j.end() || !format->is_string()) return invalid_config("format", "missing");
  c.format = TRY_CTX(parse_disk_format(format->get<std::string>()), "invalid VM disk config");
  auto size = j.find("virtual_size");
  if (size == j.end() || !size->is_number_unsigned() || size->get<uint64_t>() == 0)
    return invalid_config("virtual_size", "must be a positive integer");
  c.virtual_size = size->get<uint64_t>();
  if (auto a = j.find("architecture"); a != j.end()) {
    if (!a->is_string()) return invalid_config("architecture", "must be a string");
    c.architecture = a->get<std::string>();
  }
  if (auto t = j.find("created"); t != j.end()) {
    if (!t->is_string()) return invalid_config("created", "must be a string");
    c.created = t->get<std::string>();
  }
  return c;
}

Result<uint64_t> inspect_disk(const std::filesystem::path& file, DiskFormat format) {
  if (format == DiskFormat::kRaw) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) return errno_error("stat " + file.string());
    if (!S_ISREG(st.st_mode))
      return make_error(ErrorCode::kInvalidArgument, "{}: not a regular file", file.string());
    if (st.st_size == 0)
      return make_error(ErrorCode::kInvalidArgument, "{}: an empty file is not a disk image",
                        file.string());
    return static_cast<uint64_t>(st.st_size);
  }
  auto q = storage::Qcow2::open(
      file,
      {.mode = storage::OpenMode::kReadOnly, .open_backing = false, .l2_cache_bytes = 1 << 20});
  if (!q) {
    // The reader names the file too: "qcow2 FILE: unsupported qcow2 version 9".
    std::string why = q.error().message();
    if (const std::string own = "qcow2 " + file.string() + ": "; why.starts_with(own))
      why.erase(0, own.size());
    return make_error(ErrorCode::kInvalidArgument, "{}: not a valid qcow2 image: {}", file.string(),
                      why);
  }
  if (!(*q)->header().backing_file.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "{}: the qcow2 image has a backing file ({}); flatten it first (qemu-img "
                      "convert -O qcow2)",
                      file.string(), (*q)->header().backing_file);
  if ((*q)->size() == 0)
    return make_error(ErrorCode::kInvalidArgument, "{}: the qcow2 image has a virtual size of 0",
                      file.string());
  return (*q)->size();
}

}  // namespace vireo::image
