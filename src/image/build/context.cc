// The build context (context.h).
#include "image/build/context.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <memory>
#include <set>

#include "base/fd.h"
#include "base/file.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/rollback.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "base/time.h"
#include "container/default_spec.h"
#include "image/build/containerfile.h"
#include "image/build/layer_diff.h"
#include "image/layer_unpack.h"
#include "image/media_types.h"
#include "image/rootfs.h"
#include "image/tree.h"

namespace vireo::image::build {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

Result<Fd> open2(int dir_fd, const std::string& path, int flags, uint64_t resolve) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = resolve;
  int fd = static_cast<int>(
      ::syscall(SYS_openat2, dir_fd, path.empty() ? "." : path.c_str(), &how, sizeof how));
  if (fd < 0) return errno_error(path.empty() ? "." : path);
  return Fd(fd);
}

std::string join_rel(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a + "/" + b;
}

Result<std::vector<std::string>> list_dir(int dir_fd) {
  int dup = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) return errno_error("open directory");
  DIR* d = ::fdopendir(dup);
  if (!d) {
    ::close(dup);
    return errno_error("list directory");
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// The components of an absolute path inside the image, ".." resolved lexically.
Result<std::vector<std::string>> image_path_components(const std::string& abs) {
  std::string norm = fs::path(abs).lexically_normal().string();
  while (norm.starts_with("/..")) norm.erase(0, 3);
  while (norm.starts_with('/')) norm.erase(0, 1);
  while (norm.ends_with('/')) norm.pop_back();
  return split_relative_path(norm);
}

std::string join_components(const std::vector<std::string>& c, size_t n) {
  std::string out;
  for (size_t i = 0; i < n && i < c.size(); ++i) out = join_rel(out, c[i]);
  return out;
}

// Opens (making what is missing, owned by uid:gid) the directory at components inside the image
// root. Existing components are resolved in the root, so the image's own symlinks (/lib ->
// usr/lib) are followed but can never lead out of it.
Result<Fd> ensure_dir(int root_fd, const std::vector<std::string>& comps, uid_t uid, gid_t gid,
                      mode_t mode) {
  Fd cur = TRY(open2(root_fd, "", O_RDONLY | O_DIRECTORY, kInRoot));
  for (size_t i = 0; i < comps.size(); ++i) {
    std::string prefix = join_components(comps, i + 1);
    auto next = open2(root_fd, prefix, O_RDONLY | O_DIRECTORY, kInRoot);
    if (!next && next.error().sys_errno() == ENOENT) {
      if (::mkdirat(cur.get(), comps[i].c_str(), mode) != 0) return errno_error("mkdir /" + prefix);
      if (::fchownat(cur.get(), comps[i].c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
        return errno_error("chown /" + prefix);
      next = open2(cur.get(), comps[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW, kBeneath);
    }
    if (!next) return std::unexpected(std::move(next.error()).with_context("in the image"));
    cur = std::move(*next);
  }
  return cur;
}

bool has_glob(std::string_view s) {
  return s.find_first_of("*?[") != std::string_view::npos;
}

bool looks_like_url(std::string_view s) {
  return s.find("://") != std::string_view::npos || s.starts_with("git@");
}

// A plain, gzip or zstd tar (what the image library's unpack reads).
bool is_tar_archive(int fd) {
  std::string head(65536, '\0');
  ssize_t n = ::pread(fd, head.data(), head.size(), 0);
  if (n < 4) return false;  // a compressed tar can be smaller than one tar block
  head.resize(static_cast<size_t>(n));
  archive* a = archive_read_new();
  archive_read_support_filter_gzip(a);
  archive_read_support_filter_zstd(a);
  archive_read_support_format_tar(a);
  archive_entry* e = nullptr;
  bool ok = archive_read_open_memory(a, head.data(), head.size()) == ARCHIVE_OK &&
            archive_read_next_header(a, &e) == ARCHIVE_OK;
  archive_read_free(a);
  return ok;
}

namespace {

// Visits a source tree (a directory's contents) without following symlinks, skipping what the
// ignore file excludes. rel is relative to the source directory, ctx_rel to the context.
using Visit = std::function<Result<void>(int dir_fd, const std::string& name,
                                         const std::string& rel, const struct stat& st)>;

Result<void> walk_source(const Context& ctx, int dir_fd, const std::string& ctx_rel,
                         const std::string& rel, size_t depth, const Visit& visit) {
  if (depth > kMaxPathDepth)
    return make_error(ErrorCode::kInvalidArgument, "{}: deeper than {} components", ctx_rel,
                      kMaxPathDepth);
  for (const auto& name : TRY(list_dir(dir_fd))) {
    std::string child_ctx = join_rel(ctx_rel, name);
    if (ctx.excluded(child_ctx)) continue;
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      return errno_error("stat " + child_ctx);
    std::string child = join_rel(rel, name);
    TRY(visit(dir_fd, name, child, st));
    if (!S_ISDIR(st.st_mode)) continue;
    Fd sub(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub) return errno_error("open " + child_ctx);
    TRY(walk_source(ctx, sub.get(), child_ctx, child, depth + 1, visit));
  }
  return {};
}

}  // namespace

// What the cache key of a COPY/ADD covers: names, types, modes, sizes, contents, link targets.
Result<std::string> content_hash(const Context& ctx, std::vector<Source>& sources) {
  Hasher h;
  auto add_file = [&](int fd) -> Result<void> {
    h.update(TRY(digest_of_file(fd)).str());
    return {};
  };
  for (auto& s : sources) {
    h.update(fmt::format("source {}\n{} {:o} {}\n", s.rel, s.archive ? "archive" : "", s.st.st_mode,
                         s.st.st_size));
    if (S_ISREG(s.st.st_mode)) {
      TRY(add_file(s.fd.get()));
      continue;
    }
    TRY(walk_source(ctx, s.fd.get(), s.rel, "", 0,
                    [&](int dir_fd, const std::string& name, const std::string& rel,
                        const struct stat& st) -> Result<void> {
                      h.update(fmt::format("{}\n{:o} {}\n", rel, st.st_mode,
                                           S_ISREG(st.st_mode) ? st.st_size : 0));
                      if (S_ISLNK(st.st_mode)) {
                        char target[PATH_MAX];
                        ssize_t n = ::readlinkat(dir_fd, name.c_str(), target, sizeof target);
                        if (n > 0) h.update(std::string_view(target, static_cast<size_t>(n)));
                      } else if (S_ISREG(st.st_mode)) {
                        Fd f(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
                        if (!f) return errno_error("open " + rel);
                        TRY(add_file(f.get()));
                      }
                      return {};
                    }));
  }
  return h.digest().hex;
}

// ---------------------------------------------------------------------------------------------
// Copying into the mounted image root.

namespace {

Result<void> copy_bytes(int from, int to, const std::string& what) {
  for (;;) {
    ssize_t n = ::copy_file_range(from, nullptr, to, nullptr, 1 << 30, 0);
    if (n == 0) return {};
    if (n > 0) continue;
    if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
      return errno_error("copy " + what);
    break;
  }
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(from, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read " + what);
    if (n == 0) return {};
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::write(to, buf + done, static_cast<size_t>(n - done));
      if (w < 0) return errno_error("write " + what);
      done += w;
    }
  }
}

// Makes room for a new leaf: removes a non-directory at name; a directory stays (and is an error
// unless the new entry is one too).
Result<bool> clear_leaf(int parent, const std::string& name, bool want_dir,
                        const std::string& shown) {
  struct stat st;
  if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
  if (S_ISDIR(st.st_mode)) {
    if (!want_dir)
      return make_error(ErrorCode::kInvalidArgument, "cannot replace the directory {} with a file",
                        shown);
    return true;
  }
  if (::unlinkat(parent, name.c_str(), 0) != 0) return errno_error("replace " + shown);
  return false;
}

// Copies one source entry (src_name in src_dir; a regular file may come as src_fd instead) to
// target inside the image root.
Result<void> copy_entry(int root_fd, const std::vector<std::string>& target, int src_dir,
                        const std::string& src_name, int src_fd, const struct stat& st,
                        const Owner& o) {
  std::string shown = "/" + join_components(target, target.size());
  if (target.empty()) return {};  // the root itself: only its contents are copied
  std::vector<std::string> parent_comps(target.begin(), target.end() - 1);
  Fd parent = TRY(ensure_dir(root_fd, parent_comps, o.uid, o.gid));
  const std::string& name = target.back();
  mode_t mode = o.chmod.value_or(st.st_mode & 07777);
  bool exists_dir = TRY(clear_leaf(parent.get(), name, S_ISDIR(st.st_mode), shown));
  if (S_ISDIR(st.st_mode)) {
    if (exists_dir) return {};
    if (::mkdirat(parent.get(), name.c_str(), 0700) != 0) return errno_error("mkdir " + shown);
    if (::fchownat(parent.get(), name.c_str(), o.uid, o.gid, AT_SYMLINK_NOFOLLOW) != 0 ||
        ::fchmodat(parent.get(), name.c_str(), mode, 0) != 0)
      return errno_error("set owner and mode of " + shown);
    return {};
  }
  timespec times[2] = {st.st_atim, st.st_mtim};
  if (S_ISLNK(st.st_mode)) {
    char link[PATH_MAX];
    ssize_t n = ::readlinkat(src_dir, src_name.c_str(), link, sizeof link - 1);
    if (n < 0) return errno_error("readlink " + src_name);
    link[n] = '\0';
    if (::symlinkat(link, parent.get(), name.c_str()) != 0) return errno_error("symlink " + shown);
    if (::fchownat(parent.get(), name.c_str(), o.uid, o.gid, AT_SYMLINK_NOFOLLOW) != 0)
      return errno_error("chown " + shown);
    ::utimensat(parent.get(), name.c_str(), times, AT_SYMLINK_NOFOLLOW);
    return {};
  }
  if (!S_ISREG(st.st_mode)) return {};  // fifos, sockets, devices are not copied
  Fd in(src_fd >= 0 ? ::fcntl(src_fd, F_DUPFD_CLOEXEC, 0)
                    : ::openat(src_dir, src_name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in) return errno_error("open " + src_name);
  if (src_fd >= 0 && ::lseek(in.get(), 0, SEEK_SET) != 0) return errno_error("seek " + src_name);
  Fd out(::openat(parent.get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0600));
  if (!out) return errno_error("create " + shown);
  TRY(copy_bytes(in.get(), out.get(), shown));
  // chown first: it clears set-id bits, which the chmod then sets.
  if (::fchown(out.get(), o.uid, o.gid) != 0 || ::fchmod(out.get(), mode) != 0)
    return errno_error("set owner and mode of " + shown);
  ::futimens(out.get(), times);
  return {};
}

Result<void> extract_archive(int root_fd, const std::vector<std::string>& dest, const Source& s,
                             const Owner& o) {
  Fd dir = TRY(ensure_dir(root_fd, dest, o.uid, o.gid));
  if (::lseek(s.fd.get(), 0, SEEK_SET) != 0) return errno_error("seek " + s.written);
  int fd = s.fd.get();
  ReadFn read = [fd](void* buf, size_t len) -> Result<size_t> {
    ssize_t n = ::read(fd, buf, len);
    if (n < 0) return errno_error("read");
    return static_cast<size_t>(n);
  };
  UnpackOptions options{.mode = UnpackMode::kArchive, .privileged = true};
  TRY_CTX(unpack_tar(read, dir.get(), options), "ADD {}", s.written);
  return {};
}

}  // namespace

Result<void> copy_sources(const Context& ctx, std::vector<Source>& sources, int root_fd,
                          const std::string& dest_abs, bool dest_is_dir, const Owner& o) {
  auto dest = TRY(image_path_components(dest_abs));
  for (auto& s : sources) {
    if (s.archive) {
      TRY(extract_archive(root_fd, dest, s, o));
      continue;
    }
    if (S_ISREG(s.st.st_mode)) {
      auto target = dest;
      bool into_dir = dest_is_dir;
      if (!into_dir) {
        auto existing =
            open2(root_fd, join_components(dest, dest.size()), O_RDONLY | O_DIRECTORY, kInRoot);
        into_dir = existing.has_value();
      }
      std::string base = fs::path(s.rel).filename().string();
      if (into_dir) target.push_back(base.empty() ? "file" : base);
      if (target.empty())
        return make_error(ErrorCode::kInvalidArgument, "cannot copy a file onto /");
      TRY(copy_entry(root_fd, target, -1, s.written, s.fd.get(), s.st, o));
      continue;
    }
    TRY(ensure_dir(root_fd, dest, o.uid, o.gid));
    TRY(walk_source(ctx, s.fd.get(), s.rel, "", 0,
                    [&](int dir_fd, const std::string& name, const std::string& rel,
                        const struct stat& st) -> Result<void> {
                      auto target = dest;
                      for (const auto& c : split(rel, '/')) target.push_back(c);
                      return copy_entry(root_fd, target, dir_fd, name, -1, st, o);
                    }));
  }
  return {};
}

}  // namespace vireo::image::build
