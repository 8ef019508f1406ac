// flatten_layers: copies unpacked layers into one tree with fd-relative calls only.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <climits>
#include <map>

#include "base/fd.h"
#include "image/rootfs.h"
#include "image/tree.h"

namespace vireo::image {

namespace {

Result<std::vector<std::string>> list_dir(int dir) {
  Fd copy(::fcntl(dir, F_DUPFD_CLOEXEC, 0));
  if (!copy) return errno_error("dup");
  DIR* d = ::fdopendir(copy.get());
  if (!d) return errno_error("fdopendir");
  copy.release();
  ::rewinddir(d);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  ::closedir(d);
  return names;
}

Result<void> empty_dir(int dir) {
  for (const auto& n : TRY(list_dir(dir))) TRY(remove_at(dir, n));
  return {};
}

Result<void> copy_data(int from, int to) {
  for (;;) {
    ssize_t n = ::copy_file_range(from, nullptr, to, nullptr, 1 << 30, 0);
    if (n == 0) return {};
    if (n > 0) continue;
    if (errno != EXDEV && errno != EINVAL && errno != ENOSYS) return errno_error("copy");
    char buf[65536];
    for (;;) {
      ssize_t r = ::read(from, buf, sizeof buf);
      if (r < 0) return errno_error("read");
      if (r == 0) return {};
      if (::write(to, buf, static_cast<size_t>(r)) != r) return errno_error("write");
    }
  }
}

bool is_whiteout(const struct stat& st) {
  return S_ISCHR(st.st_mode) && st.st_rdev == 0;
}

bool is_opaque(int dir) {
  char v[2] = {};
  return ::fgetxattr(dir, "trusted.overlay.opaque", v, sizeof v) == 1 && v[0] == 'y';
}

class Flattener {
 public:
  Flattener(int dest, bool privileged) : dest_(dest), privileged_(privileged) {}

  Result<void> layer(const Layer& l) {
    links_.clear();
    TRY(apply_listed_markers(l));
    Fd src(::open(l.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!src) return errno_error(fmt::format("open {}", l.dir.string()));
    Fd dst(::fcntl(dest_, F_DUPFD_CLOEXEC, 0));
    std::vector<std::string> path;
    struct stat st;
    if (!dst || ::fstat(src.get(), &st) != 0) return errno_error("stat layer root");
    TRY_CTX(copy_dir(src.get(), dst.get(), path), "{}", l.diff_id.str());
    return meta(dst.get(), st);
  }

 private:
  // Markers an unprivileged unpack could only list; paths that do not resolve to a directory
  // (absent, or through a symlink) have nothing to hide.
  Result<void> apply_listed_markers(const Layer& l) {
    for (const auto& dir : l.opaque_dirs) {
      auto parts = TRY(split_relative_path(dir));
      if (auto fd = open_dir_in(dest_, parts, CreateDirs::kNo)) TRY(empty_dir(fd->get()));
    }
    for (const auto& w : l.whiteouts) {
      auto parts = TRY(split_relative_path(w));
      if (parts.empty()) continue;
      std::string name = parts.back();
      parts.pop_back();
      if (auto fd = open_dir_in(dest_, parts, CreateDirs::kNo)) TRY(remove_at(fd->get(), name));
    }
    return {};
  }

  Result<void> copy_dir(int src, int dst, std::vector<std::string>& path) {
    if (!privileged_) ::fchmod(dst, 0700);
    if (is_opaque(src)) TRY(empty_dir(dst));
    for (const auto& name : TRY(list_dir(src))) {
      struct stat st;
      if (::fstatat(src, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno_error(fmt::format("stat {}", name));
      path.push_back(name);
      auto r = entry(src, dst, name, st, path);
      path.pop_back();
      TRY(std::move(r));
    }
    return {};
  }

  Result<void> entry(int src, int dst, const std::string& name, const struct stat& st,
                     std::vector<std::string>& path) {
    if (is_whiteout(st)) return remove_at(dst, name);
    if (S_ISDIR(st.st_mode)) return directory(src, dst, name, st, path);
    TRY(remove_at(dst, name));
    if (S_ISREG(st.st_mode)) return file(src, dst, name, st, path);
    if (S_ISLNK(st.st_mode)) return symlink(src, dst, name, st);
    if (!privileged_ && !S_ISFIFO(st.st_mode)) return {};
    if (::mknodat(dst, name.c_str(), st.st_mode, st.st_rdev) != 0)
      return errno_error(fmt::format("mknod {}", name));
    Fd fd(::openat(dst, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (privileged_ && ::fchownat(fd.get(), "", st.st_uid, st.st_gid, AT_EMPTY_PATH) != 0)
      return errno_error(fmt::format("chown {}", name));
    return {};
  }

  Result<void> directory(int src, int dst, const std::string& name, const struct stat& st,
                         std::vector<std::string>& path) {
    struct stat existing;
    if (::fstatat(dst, name.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0 &&
        !S_ISDIR(existing.st_mode))
      TRY(remove_at(dst, name));
    if (::mkdirat(dst, name.c_str(), 0700) != 0 && errno != EEXIST)
      return errno_error(fmt::format("mkdir {}", name));
    Fd from(::openat(src, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    Fd to(::openat(dst, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!from || !to) return errno_error(fmt::format("open {}", name));
    TRY(copy_dir(from.get(), to.get(), path));
    return meta(to.get(), st);
  }

  Result<void> file(int src, int dst, const std::string& name, const struct stat& st,
                    const std::vector<std::string>& path) {
    auto key = std::make_pair(st.st_dev, st.st_ino);
    if (st.st_nlink > 1) {
      auto it = links_.find(key);
      if (it != links_.end()) return link_to(it->second, dst, name);
      links_[key] = path;
    }
    Fd from(::openat(src, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    Fd to(::openat(dst, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!from || !to) return errno_error(fmt::format("open {}", name));
    TRY_CTX(copy_data(from.get(), to.get()), "{}", name);
    return meta(to.get(), st);
  }

  Result<void> link_to(const std::vector<std::string>& first, int dst, const std::string& name) {
    std::vector<std::string> dir(first.begin(), first.end() - 1);
    Fd parent = TRY(open_dir_in(dest_, dir, CreateDirs::kNo));
    if (::linkat(parent.get(), first.back().c_str(), dst, name.c_str(), 0) != 0)
      return errno_error(fmt::format("link {}", name));
    return {};
  }

  Result<void> symlink(int src, int dst, const std::string& name, const struct stat& st) {
    char target[PATH_MAX + 1];
    ssize_t n = ::readlinkat(src, name.c_str(), target, PATH_MAX);
    if (n < 0) return errno_error(fmt::format("readlink {}", name));
    target[n] = 0;
    if (::symlinkat(target, dst, name.c_str()) != 0)
      return errno_error(fmt::format("symlink {}", name));
    if (privileged_) ::fchownat(dst, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW);
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    ::utimensat(dst, name.c_str(), times, AT_SYMLINK_NOFOLLOW);
    return {};
  }

  Result<void> meta(int fd, const struct stat& st) {
    if (privileged_ && ::fchown(fd, st.st_uid, st.st_gid) != 0) return errno_error("chown");
    if (::fchmod(fd, st.st_mode & 07777) != 0) return errno_error("chmod");
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    if (::futimens(fd, times) != 0) return errno_error("set times");
    return {};
  }

  int dest_;
  bool privileged_;
  std::map<std::pair<dev_t, ino_t>, std::vector<std::string>> links_;
};

}  // namespace

Result<void> flatten_layers(const std::vector<Layer>& bottom_first,
                            const std::filesystem::path& dest, bool privileged) {
  Fd root(::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return errno_error(fmt::format("open {}", dest.string()));
  Flattener f(root.get(), privileged);
  for (const auto& layer : bottom_first) TRY_CTX(f.layer(layer), "flatten into {}", dest.string());
  return {};
}

}  // namespace vireo::image
