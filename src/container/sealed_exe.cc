#include "container/sealed_exe.h"

#include <fcntl.h>
#include <linux/limits.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "base/fd.h"
#include "base/file.h"

extern char** environ;

namespace vireo::container {

namespace {

constexpr const char* kMarker = "_VIREO_RUNTIME_SEALED";

Result<Fd> overlay_copy(const std::string& scratch_dir) {
  char exe[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return errno_error("readlink /proc/self/exe");
  std::filesystem::path path(std::string(exe, static_cast<size_t>(n)));
  std::string dir = path.parent_path().string();
  std::string empty = scratch_dir + "/.empty-layer";
  if (dir.find_first_of(":,\\") != std::string::npos ||
      empty.find_first_of(":,\\") != std::string::npos)
    return make_error(ErrorCode::kInvalidArgument, "path not usable as an overlay layer");
  TRY(make_dirs(empty, 0700));
  Fd fs(::fsopen("overlay", FSOPEN_CLOEXEC));
  if (!fs) return errno_error("fsopen overlay");
  // Two lower layers and no upper one: the only read-only form overlayfs accepts.
  std::string lower = dir + ":" + empty;
  if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, "lowerdir", lower.c_str(), 0) != 0 ||
      ::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
    return errno_error("configure overlay");
  Fd mnt(::fsmount(fs.get(), FSMOUNT_CLOEXEC,
                   MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID));
  if (!mnt) return errno_error("fsmount overlay");
  Fd file(::openat(mnt.get(), path.filename().c_str(), O_PATH | O_CLOEXEC));
  if (!file) return errno_error("open binary in overlay");
  return file;
}

Result<Fd> memfd_copy() {
  Fd src(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  if (!src) return errno_error("open /proc/self/exe");
  struct stat st;
  if (::fstat(src.get(), &st) != 0) return errno_error("stat /proc/self/exe");
  Fd mem(::memfd_create("vireo-runtime", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!mem) return errno_error("memfd_create");
  for (off_t done = 0; done < st.st_size;) {
    ssize_t n = ::sendfile(mem.get(), src.get(), nullptr, static_cast<size_t>(st.st_size - done));
    if (n <= 0) return errno_error("copy runtime binary");
    done += n;
  }
  if (::fcntl(mem.get(), F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) !=
      0)
    return errno_error("seal runtime copy");
  return mem;
}

}  // namespace

Result<void> ensure_sealed_exe(char** argv, const std::string& scratch_dir) {
  if (::getenv(kMarker)) {
    ::unsetenv(kMarker);
    return {};
  }
  auto copy = overlay_copy(scratch_dir);
  if (!copy) copy = memfd_copy();
  if (!copy) return std::unexpected(std::move(copy.error()).with_context("seal runtime binary"));
  ::setenv(kMarker, "1", 1);
  ::syscall(SYS_execveat, copy->get(), "", argv, environ, AT_EMPTY_PATH);
  int err = errno;
  ::unsetenv(kMarker);
  return std::unexpected(Error::from_errno(err, "re-execute sealed runtime binary"));
}

}  // namespace vireo::container
