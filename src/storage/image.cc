#include "storage/image.h"

#include <fcntl.h>
#include <unistd.h>

#include "base/fd.h"
#include "storage/io.h"
#include "storage/qcow2/qcow2.h"

namespace vireo::storage {

Result<ImageFormat> parse_image_format(std::string_view text) {
  if (text == "auto") return ImageFormat::kAuto;
  if (text == "raw") return ImageFormat::kRaw;
  if (text == "qcow2") return ImageFormat::kQcow2;
  return make_error(ErrorCode::kInvalidArgument, "unknown image format {} (raw, qcow2, auto)",
                    text);
}

Result<std::unique_ptr<BlockDevice>> open_image(const std::filesystem::path& path,
                                                ImageFormat format, OpenMode mode) {
  if (format == ImageFormat::kAuto) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return errno_error(fmt::format("open {}", path.string()));
    uint8_t magic[4] = {};
    bool qcow2 = ::pread(fd.get(), magic, 4, 0) == 4 && load_be32(magic) == qcow2::kMagic;
    format = qcow2 ? ImageFormat::kQcow2 : ImageFormat::kRaw;
  }
  if (format == ImageFormat::kRaw) return TRY(RawFile::open(path, mode));
  Qcow2OpenOptions options;
  options.mode = mode;
  return TRY(Qcow2::open(path, options));
}

}  // namespace vireo::storage
