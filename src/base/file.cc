#include "base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fd.h"

namespace vireo {

Result<std::string> read_file(const std::filesystem::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("open {}", path.string()));
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(fmt::format("read {}", path.string()));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

static Result<void> write_all(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(fmt::format("write {}", what));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

Result<void> write_file_atomic(const std::filesystem::path& path, std::string_view content,
                               int mode) {
  std::string tmp = path.string() + ".tmp-XXXXXX";
  Fd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("create temporary file for {}", path.string()));
  auto fail = [&](Error e) -> Result<void> {
    ::unlink(tmp.c_str());
    return std::unexpected(std::move(e));
  };
  if (::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0)
    return fail(Error::from_errno(errno, "chmod " + tmp));
  if (auto r = write_all(fd.get(), content, tmp); !r) return fail(r.error());
  if (::fsync(fd.get()) != 0) return fail(Error::from_errno(errno, "fsync " + tmp));
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return fail(Error::from_errno(errno, fmt::format("rename to {}", path.string())));
  return {};
}

Result<void> make_dirs(const std::filesystem::path& path, int mode) {
  std::filesystem::path so_far;
  for (const auto& part : path) {
    so_far /= part;
    if (part == so_far.root_path() || part.empty()) continue;
    if (::mkdir(so_far.c_str(), static_cast<mode_t>(mode)) != 0 && errno != EEXIST)
      return errno_error(fmt::format("mkdir {}", so_far.string()));
  }
  return {};
}

}  // namespace vireo
