#include "daemon/container_volumes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fd.h"
#include "base/file.h"
#include "base/log.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "daemon/storage.h"

namespace vireo::daemon {

namespace {

namespace fs = std::filesystem;
constexpr auto kToolTimeout = std::chrono::minutes(5);

bool is_mountpoint(const fs::path& p) {
  struct stat a {
  }, b{};
  if (::stat(p.c_str(), &a) != 0 || ::stat(p.parent_path().c_str(), &b) != 0) return false;
  return a.st_dev != b.st_dev;
}

Result<void> tool(const std::vector<std::string>& argv, const std::string& what) {
  auto r = TRY(run_process(argv, {.timeout = kToolTimeout}));
  if (!r.ok()) return make_error(ErrorCode::kIo, "{}: {}", what, std::string(trim(r.err + r.out)));
  return {};
}

// A volume nobody wrote to yet reads as zeros at its start, where file systems keep their
// superblocks; anything else that blkid does not know is refused rather than formatted.
Result<bool> never_written(const fs::path& file) {
  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error("open " + file.string());
  std::vector<char> head(1 << 20);
  ssize_t n = ::pread(fd.get(), head.data(), head.size(), 0);
  if (n < 0) return errno_error("read " + file.string());
  return std::all_of(head.begin(), head.begin() + n, [](char c) { return c == 0; });
}

Result<std::string> filesystem_type(const fs::path& file) {
  auto r = TRY(run_process({"blkid", "-p", "-o", "value", "-s", "TYPE", file.string()},
                           {.timeout = kToolTimeout}));
  return std::string(trim(r.out));  // blkid exits 2 when it finds nothing
}

}  // namespace

Result<StorageVolumes::Mounted> StorageVolumes::acquire(const std::string& volume) {
  auto slash = volume.find('/');
  if (slash == std::string::npos)
    return make_error(ErrorCode::kInvalidArgument, "expected POOL/VOLUME, got '{}'", volume);
  const std::string pool = volume.substr(0, slash), name = volume.substr(slash + 1);
  std::lock_guard lock(mutex_);
  const fs::path dir = mount_root_ / pool / name;
  if (is_mountpoint(dir)) return Mounted{dir, false};
  Json info = TRY(storage_.show_volume(pool, name));
  if (info.value("format", "") != "raw" || !info.contains("file"))
    return make_error(ErrorCode::kInvalidArgument,
                      "containers mount raw volumes of dir pools (through a loop device); this "
                      "one is {} in pool {}",
                      info.value("format", "?"), pool);
  const fs::path file = info["file"].get<std::string>();
  std::string type = TRY(filesystem_type(file));
  bool fresh = false;
  if (type.empty()) {
    if (!TRY(never_written(file)))
      return make_error(ErrorCode::kInvalidArgument,
                        "it holds data but no file system Vireo can mount (ext4, xfs, btrfs...)");
    TRY(tool({"mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-L",
              name.substr(0, 16), file.string()},
             "make a file system"));
    fresh = true;
  }
  TRY(make_dirs(dir, 0711));
  TRY(tool({"mount", "-o", "loop", file.string(), dir.string()}, "mount it"));
  if (fresh) {
    // mkfs leaves lost+found; an empty volume is what a container expects.
    std::error_code ec;
    fs::remove(dir / "lost+found", ec);
  }
  spdlog::info("volume {} mounted on {}{}", volume, dir.string(), fresh ? " (new ext4)" : "");
  return Mounted{dir, fresh};
}

void StorageVolumes::release(const std::string& volume) {
  std::lock_guard lock(mutex_);
  const fs::path dir = mount_root_ / volume;
  if (!is_mountpoint(dir)) return;
  if (auto r = tool({"umount", dir.string()}, "unmount volume " + volume); !r) {
    spdlog::warn("{}", r.error().message());
    return;
  }
  std::error_code ec;
  fs::remove(dir, ec);
}

}  // namespace vireo::daemon
