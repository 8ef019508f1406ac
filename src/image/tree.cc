#include "image/tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>

namespace vireo::image {

namespace {

constexpr uint64_t kResolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS;

int openat2_in_root(int dir_fd, const char* path, int flags) {
  struct open_how how {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = kResolve;
  for (;;) {
    long fd = ::syscall(SYS_openat2, dir_fd, path, &how, sizeof how);
    if (fd >= 0 || errno != EAGAIN) return static_cast<int>(fd);
  }
}

std::unexpected<Error> resolve_error(int err, std::string_view path) {
  if (err == ELOOP || err == EXDEV)
    return make_error(ErrorCode::kInvalidArgument,
                      "'{}' is or goes through a symlink, which is never followed", path);
  if (err == ENOTDIR)
    return make_error(ErrorCode::kInvalidArgument, "'{}' is or goes through a non-directory", path);
  return std::unexpected(Error::from_errno(err, fmt::format("open '{}'", path)));
}

Result<Fd> open_or_make(int dir_fd, const std::string& name, CreateDirs create,
                        std::string_view shown) {
  if (create == CreateDirs::kYes && ::mkdirat(dir_fd, name.c_str(), 0755) != 0 && errno != EEXIST)
    return errno_error(fmt::format("mkdir '{}'", shown));
  Fd fd(openat2_in_root(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY));
  if (!fd) return resolve_error(errno, shown);
  return fd;
}

// Unlinks every entry of the open directory dir (not following symlinks).
Result<void> empty_dir(int dir, int depth) {
  if (depth > 512) return make_error(ErrorCode::kInvalidArgument, "directory tree too deep");
  Fd copy(::fcntl(dir, F_DUPFD_CLOEXEC, 0));
  if (!copy) return errno_error("dup");
  DIR* d = ::fdopendir(copy.get());
  if (!d) return errno_error("fdopendir");
  copy.release();
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  ::closedir(d);
  for (const auto& n : names) {
    if (::unlinkat(dir, n.c_str(), 0) == 0 || errno == ENOENT) continue;
    if (errno != EISDIR && errno != EPERM) return errno_error(fmt::format("unlink '{}'", n));
    Fd sub(::openat(dir, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub) return errno_error(fmt::format("open '{}'", n));
    ::fchmod(sub.get(), 0700);
    TRY(empty_dir(sub.get(), depth + 1));
    sub.reset();
    if (::unlinkat(dir, n.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
      return errno_error(fmt::format("rmdir '{}'", n));
  }
  return {};
}

}  // namespace

Result<std::vector<std::string>> split_relative_path(std::string_view path) {
  if (path.starts_with('/')) return make_error(ErrorCode::kInvalidArgument, "absolute path");
  if (path.size() >= PATH_MAX) return make_error(ErrorCode::kInvalidArgument, "path too long");
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view c = path.substr(start, end - start);
    start = end + 1;
    if (c.empty() || c == ".") continue;
    if (c == "..") return make_error(ErrorCode::kInvalidArgument, "path has a '..' component");
    if (c.size() > NAME_MAX) return make_error(ErrorCode::kInvalidArgument, "name too long");
    out.emplace_back(c);
  }
  if (out.size() > kMaxPathDepth)
    return make_error(ErrorCode::kInvalidArgument, "path deeper than {} components", kMaxPathDepth);
  return out;
}

Result<Fd> open_dir_in(int root_fd, const std::vector<std::string>& components, CreateDirs create) {
  std::string path;
  for (const auto& c : components) path += (path.empty() ? "" : "/") + c;
  Fd fd(openat2_in_root(root_fd, path.empty() ? "." : path.c_str(), O_RDONLY | O_DIRECTORY));
  if (fd) return fd;
  if (errno != ENOENT || create == CreateDirs::kNo) return resolve_error(errno, path);
  // Some parents are missing: walk down one component at a time, making them.
  Fd cur(::fcntl(root_fd, F_DUPFD_CLOEXEC, 0));
  if (!cur) return errno_error("dup");
  std::string so_far;
  for (const auto& c : components) {
    so_far += (so_far.empty() ? "" : "/") + c;
    cur = TRY(open_or_make(cur.get(), c, create, so_far));
  }
  return cur;
}

Result<Fd> open_in_root(int root_fd, std::string_view path, int flags) {
  std::string p(path);
  Fd fd(openat2_in_root(root_fd, p.c_str(), flags));
  if (!fd) return resolve_error(errno, path);
  return fd;
}

Result<void> remove_at(int dir_fd, const std::string& name) {
  if (::unlinkat(dir_fd, name.c_str(), 0) == 0 || errno == ENOENT) return {};
  if (errno != EISDIR && errno != EPERM) return errno_error(fmt::format("unlink '{}'", name));
  Fd sub(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!sub) return errno_error(fmt::format("open '{}'", name));
  ::fchmod(sub.get(), 0700);
  TRY(empty_dir(sub.get(), 0));
  sub.reset();
  if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
    return errno_error(fmt::format("rmdir '{}'", name));
  return {};
}

Result<void> remove_tree(const std::filesystem::path& path) {
  std::string parent = path.parent_path().empty() ? "." : path.parent_path().string();
  Fd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return errno == ENOENT ? Result<void>() : errno_error(fmt::format("open {}", parent));
  return with_context(remove_at(dir.get(), path.filename().string()), path.string());
}

uint64_t tree_size(const std::filesystem::path& path) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(path, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st;
    if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode))
      total += static_cast<uint64_t>(st.st_size);
  }
  return total;
}

}  // namespace vireo::image
