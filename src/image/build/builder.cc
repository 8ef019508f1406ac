#include "image/build/builder.h"

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

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr std::string_view kDefaultPath =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// Build arguments Docker passes to RUN without an ARG declaring them (never stored).
constexpr std::string_view kProxyArgs[] = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                                           "FTP_PROXY",  "ftp_proxy",  "NO_PROXY",    "no_proxy",
                                           "ALL_PROXY",  "all_proxy"};
constexpr int kOutputLines = 5;
constexpr auto kKillGrace = 10s;

// ---------------------------------------------------------------------------------------------
// Paths relative to a directory fd.

constexpr uint64_t kBeneath = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
constexpr uint64_t kInRoot = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;

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
                      mode_t mode = 0755) {
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

// ---------------------------------------------------------------------------------------------
// The build context: COPY/ADD sources, resolved beneath the context directory.

struct Source {
  std::string written;  // as in the Containerfile
  std::string rel;      // normalized, relative to the context ("" is the context itself)
  Fd fd;                // O_RDONLY, the source itself (a followed symlink's target)
  struct stat st {};
  bool archive = false;  // ADD: a tar to extract
};

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

class Context {
 public:
  static Result<Context> open(const fs::path& dir) {
    Context c;
    c.path_ = dir;
    c.fd_ = TRY_CTX(open2(AT_FDCWD, dir.string(), O_RDONLY | O_DIRECTORY, 0), "build context");
    for (const char* name : {".containerignore", ".dockerignore"}) {
      auto f = open2(c.fd_.get(), name, O_RDONLY, kBeneath);
      if (!f) continue;
      std::string text;
      char buf[8192];
      ssize_t n;
      while ((n = ::read(f->get(), buf, sizeof buf)) > 0 && text.size() < (1 << 20))
        text.append(buf, static_cast<size_t>(n));
      c.ignore_ = IgnoreRules::parse(text);
      break;
    }
    return c;
  }

  bool excluded(const std::string& rel) const { return !rel.empty() && ignore_.excluded(rel); }
  int fd() const { return fd_.get(); }

  // The sources of a COPY/ADD: globs expanded, each checked to be inside the context.
  Result<std::vector<Source>> resolve(const std::vector<std::string>& written, bool add,
                                      const char* what) const {
    std::vector<Source> out;
    for (const auto& w : written) {
      if (add && looks_like_url(w))
        return make_error(ErrorCode::kInvalidArgument,
                          "ADD source '{}': URLs are not supported; download in a RUN step", w);
      if (w.starts_with('/'))
        return make_error(ErrorCode::kInvalidArgument,
                          "{} source '{}' is outside the build context (an absolute path)", what,
                          w);
      std::string norm = fs::path(w).lexically_normal().string();
      while (norm.ends_with('/')) norm.pop_back();
      if (norm == ".") norm.clear();
      if (norm == ".." || norm.starts_with("../"))
        return make_error(ErrorCode::kInvalidArgument,
                          "{} source '{}' is outside the build context", what, w);
      std::vector<std::string> rels;
      if (has_glob(norm)) {
        TRY(glob(norm, "", 0, rels));
        if (rels.empty())
          return make_error(ErrorCode::kNotFound,
                            "{} source '{}': no file in the build context matches", what, w);
      } else {
        rels.push_back(norm);
      }
      for (const auto& rel : rels) out.push_back(TRY(open_source(w, rel, add, what)));
    }
    return out;
  }

 private:
  Result<Source> open_source(const std::string& written, const std::string& rel, bool add,
                             const char* what) const {
    Source s;
    s.written = written;
    s.rel = rel;
    auto fd = open2(fd_.get(), rel, O_RDONLY | O_NONBLOCK, kBeneath);
    if (!fd && fd.error().sys_errno() == EXDEV)
      return make_error(ErrorCode::kInvalidArgument,
                        "{} source '{}' is outside the build context (through a symlink)", what,
                        written);
    if ((!fd && fd.error().sys_errno() == ENOENT) || excluded(rel))
      return make_error(ErrorCode::kNotFound, "{} source '{}' not found in the build context {}",
                        what, written, path_.string());
    if (!fd) return std::unexpected(std::move(fd.error()).with_context(what));
    s.fd = std::move(*fd);
    if (::fstat(s.fd.get(), &s.st) != 0) return errno_error("stat " + written);
    if (!S_ISREG(s.st.st_mode) && !S_ISDIR(s.st.st_mode))
      return make_error(ErrorCode::kInvalidArgument, "{} source '{}' is not a file or directory",
                        what, written);
    int flags = ::fcntl(s.fd.get(), F_GETFL);
    ::fcntl(s.fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    s.archive = add && S_ISREG(s.st.st_mode) && is_tar_archive(s.fd.get());
    return s;
  }

  // Context paths matching pattern, component by component (not descending deeper than it).
  Result<void> glob(const std::string& pattern, const std::string& dir_rel, size_t depth,
                    std::vector<std::string>& out) const {
    auto want = split(pattern, '/');
    if (depth >= want.size() || depth > kMaxPathDepth) return {};
    auto dir = open2(fd_.get(), dir_rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, kBeneath);
    if (!dir) return {};
    for (const auto& name : TRY(list_dir(dir->get()))) {
      if (::fnmatch(want[depth].c_str(), name.c_str(), 0) != 0) continue;
      std::string rel = join_rel(dir_rel, name);
      if (excluded(rel)) continue;
      if (depth + 1 == want.size())
        out.push_back(rel);
      else
        TRY(glob(pattern, rel, depth + 1, out));
    }
    return {};
  }

  fs::path path_;
  Fd fd_;
  IgnoreRules ignore_;
};

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

struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
  std::optional<mode_t> chmod;
};

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

// ---------------------------------------------------------------------------------------------
// RUN: a container through the vireo-runtime binary.

struct RunOutcome {
  int exit_code = -1;
  int signal = 0;
  std::string output;
};

std::string read_tail(const fs::path& file, size_t max) {
  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return {};
  off_t start = st.st_size > static_cast<off_t>(max) ? st.st_size - static_cast<off_t>(max) : 0;
  std::string out(static_cast<size_t>(st.st_size - start), '\0');
  ssize_t n = ::pread(fd.get(), out.data(), out.size(), start);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

void runtime_cleanup(const fs::path& runtime, const fs::path& state_root, const std::string& id) {
  (void)run_process({runtime.string(), "--root", state_root.string(), "delete", "--force", id},
                    {.timeout = 30s});
}

Result<RunOutcome> run_runtime(const fs::path& runtime, const fs::path& state_root,
                               const fs::path& bundle, const fs::path& log, std::stop_token stop) {
  std::string id = "vireo-build-" + random_hex(6);
  Fd log_fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!log_fd) return errno_error("create " + log.string());
  std::vector<std::string> argv = {
      runtime.string(), "--root", state_root.string(), "run", "--bundle", bundle.string(), id};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log_fd.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, log_fd.get(), 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigfillset(&defaults);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args = c_strings(argv);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return std::unexpected(Error::from_errno(rc, "start " + runtime.string()));

  Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  Fd wake(::eventfd(0, EFD_CLOEXEC));
  std::stop_callback on_stop(stop, [&wake] {
    uint64_t one = 1;
    (void)!::write(wake.get(), &one, sizeof one);
  });
  bool cancelled = false;
  while (pidfd && wake) {
    pollfd fds[2] = {{pidfd.get(), POLLIN, 0}, {wake.get(), POLLIN, 0}};
    int r = ::poll(fds, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (fds[0].revents & POLLIN)) break;
    if (fds[1].revents & POLLIN) {
      // The container may not exist yet: kill until the runtime returns, then the runtime itself
      // (the forced delete below ends a container it left).
      cancelled = true;
      auto deadline = std::chrono::steady_clock::now() + kKillGrace;
      pollfd exit_fd = {pidfd.get(), POLLIN, 0};
      do {
        (void)run_process(
            {runtime.string(), "--root", state_root.string(), "kill", "--all", id, "KILL"},
            {.timeout = 5s});
      } while (::poll(&exit_fd, 1, 200) == 0 && std::chrono::steady_clock::now() < deadline);
      if (::poll(&exit_fd, 1, 0) <= 0) ::kill(pid, SIGKILL);
      break;
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (cancelled) {
    runtime_cleanup(runtime, state_root, id);
    return make_error(ErrorCode::kCancelled, "build cancelled");
  }
  RunOutcome out;
  if (WIFEXITED(status)) out.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) {
    out.signal = WTERMSIG(status);
    runtime_cleanup(runtime, state_root, id);
  }
  out.output = read_tail(log, kMaxStepOutput);
  return out;
}

std::string last_lines(const std::string& output, int n) {
  std::vector<std::string> lines;
  for (const auto& l : split(output, '\n')) {
    auto t = trim(l);
    if (!t.empty()) lines.emplace_back(t);
  }
  if (lines.size() > static_cast<size_t>(n)) lines.erase(lines.begin(), lines.end() - n);
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "" : " | ") + l;
  return out;
}

// ---------------------------------------------------------------------------------------------
// The layer cache.

struct CacheEntry {
  Descriptor layer;
  Digest diff_id;
};

class Cache {
 public:
  Cache(ImageStore& store, bool enabled)
      : store_(store), dir_(store.root() / "build-cache"), enabled_(enabled) {}

  // Drops the entries whose blobs are gone (pruned).
  void sweep() {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_, ec)) {
      auto hex = e.path().stem().string();
      if (e.path().extension() == ".json" && !load(hex)) ::unlink(e.path().c_str());
    }
  }

  std::optional<CacheEntry> get(const std::string& key) {
    if (!enabled_) return std::nullopt;
    auto entry = load(key);
    if (!entry) ::unlink(file_of(key).c_str());
    return entry;
  }

  void put(const std::string& key, const CacheEntry& e) {
    if (!make_dirs(dir_, 0700)) return;
    Json j = {{"layer", e.layer.to_json()}, {"diff_id", e.diff_id.str()}};
    (void)write_file_atomic(file_of(key), j.dump() + "\n", 0600);
  }

 private:
  fs::path file_of(const std::string& key) const { return dir_ / (key + ".json"); }

  std::optional<CacheEntry> load(const std::string& key) {
    auto text = read_file(file_of(key));
    if (!text) return std::nullopt;
    auto j = parse_untrusted_json(*text);
    if (!j || !j->is_object() || !j->contains("layer") || !j->contains("diff_id"))
      return std::nullopt;
    auto layer = parse_descriptor((*j)["layer"]);
    auto diff_id = (*j)["diff_id"].is_string()
                       ? Digest::parse((*j)["diff_id"].get<std::string>())
                       : Result<Digest>(make_error(ErrorCode::kInvalidArgument, "diff_id"));
    if (!layer || !diff_id) return std::nullopt;
    // Only while the blob is there: prune may have removed it.
    auto size = store_.blobs().size_of(layer->digest);
    if (!size || *size != layer->size) return std::nullopt;
    return CacheEntry{*layer, *diff_id};
  }

  ImageStore& store_;
  fs::path dir_;
  bool enabled_;
};

// ---------------------------------------------------------------------------------------------
// Scratch space of one build.

bool process_alive(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno != ESRCH;
}

// Removes what builds of a dead daemon left: containers, mounts, files.
void sweep_stale(const fs::path& tmp_root, const fs::path& runtime) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(tmp_root, ec)) {
    std::string name = e.path().filename().string();
    pid_t pid = static_cast<pid_t>(std::atoi(name.c_str()));
    if (pid <= 0 || pid == ::getpid() || process_alive(pid)) continue;
    fs::path state = e.path() / "runtime";
    std::error_code ec2;
    if (!runtime.empty() && fs::exists(state, ec2))
      for (const auto& c : fs::directory_iterator(state, ec2))
        if (c.is_directory(ec2)) runtime_cleanup(runtime, state, c.path().filename().string());
    for (const auto& s : fs::directory_iterator(e.path(), ec2))
      if (s.path().filename().string().starts_with("step-")) (void)release_rootfs(s.path());
    (void)remove_tree(e.path());
  }
}

// ---------------------------------------------------------------------------------------------
// The builder.

std::string layer_media_type(const std::string& t) {
  if (t == media::kDockerLayer) return std::string(media::kOciLayerGzip);
  if (t == media::kDockerForeignLayer)
    return "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
  return t;
}

std::string short_text(std::string_view s, size_t max = 60) {
  std::string out(s.substr(0, max));
  for (auto& c : out)
    if (c == '\n' || c == '\t') c = ' ';
  if (s.size() > max) out += "...";
  return out;
}

class Builder {
 public:
  Builder(ImageStore& store, const BuildOptions& o, BuildProgress& p, Context ctx)
      : store_(store), o_(o), progress_(p), ctx_(std::move(ctx)), cache_(store, !o.no_cache) {}

  Result<BuildResult> run(const Containerfile& file) {
    const auto& list = file.instructions;
    total_ = static_cast<int>(list.size());
    size_t i = 0;
    for (; list[i].keyword == Keyword::kArg; ++i) {
      begin_step(i, list[i]);
      for (const auto& d : TRY(arg_decls(list[i], global_lookup()))) {
        auto given = o_.build_args.find(d.name);
        global_args_[d.name] =
            given != o_.build_args.end() ? std::optional(given->second) : d.default_value;
      }
      end_step(false, {});
    }
    begin_step(i, list[i]);
    TRY(from(list[i]));
    end_step(false, {});
    bool layer_steps = std::any_of(list.begin(), list.end(), [](const Instruction& in) {
      return in.keyword == Keyword::kRun || in.keyword == Keyword::kCopy ||
             in.keyword == Keyword::kAdd;
    });
    if (layer_steps && ::geteuid() != 0)
      return make_error(ErrorCode::kPermissionDenied,
                        "building images with RUN, COPY or ADD needs root (overlay mounts and "
                        "containers); vireod runs as uid {}",
                        ::geteuid());
    if (layer_steps) TRY(make_scratch());
    cache_.sweep();
    for (++i; i < list.size(); ++i) {
      if (progress_.stop_token().stop_requested())
        return make_error(ErrorCode::kCancelled, "build cancelled");
      begin_step(i, list[i]);
      TRY(dispatch(list[i]));
    }
    return commit();
  }

  ~Builder() {
    if (!scratch_.empty()) (void)remove_tree(scratch_);
  }

 private:
  // --- steps ----------------------------------------------------------------------------------

  void begin_step(size_t i, const Instruction& in) {
    index_ = static_cast<int>(i) + 1;
    progress_.step(index_, total_,
                   fmt::format("step {}/{}: {}", index_, total_, short_text(in.text)));
    log_.push_back({index_, in.text, false, {}});
  }
  void end_step(bool cached, std::string output) {
    log_.back().cached = cached;
    log_.back().output = std::move(output);
    if (cached) ++cached_;
  }

  Result<void> dispatch(const Instruction& in) {
    switch (in.keyword) {
      case Keyword::kRun:
        return run_step(in);
      case Keyword::kCopy:
      case Keyword::kAdd:
        return copy_step(in);
      default:
        break;
    }
    TRY(metadata(in));
    history(in, true);
    end_step(false, {});
    return {};
  }

  Result<void> from(const Instruction& in) {
    From f = TRY(from_args(in, global_lookup()));
    chain(fmt::format("FROM {}", f.image));
    config_ = {{"architecture", "amd64"},
               {"os", "linux"},
               {"config", Json::object()},
               {"rootfs", {{"type", "layers"}, {"diff_ids", Json::array()}}},
               {"history", Json::array()}};
    if (f.image == "scratch") return {};
    auto info = store_.show(f.image);
    if (!info)
      return make_error(info.error().code(), "line {}: FROM {}: {}", in.line, f.image,
                        info.error().message());
    key_ = sha256_hex(fmt::format("FROM {}", info->manifest_digest.str()));
    if (info->config.raw.is_object()) config_ = info->config.raw;
    if (!config_.contains("config") || !config_["config"].is_object())
      config_["config"] = Json::object();
    if (!config_.contains("history") || !config_["history"].is_array())
      config_["history"] = Json::array();
    for (const auto& l : info->manifest.layers) {
      Descriptor d = l;
      d.media_type = layer_media_type(l.media_type);
      d.platform.reset();
      descriptors_.push_back(d);
    }
    diff_ids_ = info->config.diff_ids;
    layers_ = TRY_CTX(store_.unpack(f.image), "FROM {}", f.image);
    return {};
  }

  Result<void> metadata(const Instruction& in) {
    Json& c = config_["config"];
    auto vars = lookup();
    switch (in.keyword) {
      case Keyword::kArg:
        for (const auto& d : TRY(arg_decls(in, vars))) {
          auto given = o_.build_args.find(d.name);
          std::optional<std::string> v = d.default_value;
          if (given != o_.build_args.end()) {
            v = given->second;
          } else if (!v && global_args_.contains(d.name)) {
            v = global_args_[d.name];
          }
          args_[d.name] = v;
          // Not the value: like Docker, a changed value misses the cache where it is used (RUN's
          // environment, substituted arguments), not from the declaration on.
          chain(fmt::format("ARG {}", d.name));
        }
        return {};
      case Keyword::kEnv:
        for (const auto& [k, v] : TRY(key_values(in, vars))) set_env(k, v);
        break;
      case Keyword::kLabel:
        if (!c.contains("Labels") || !c["Labels"].is_object()) c["Labels"] = Json::object();
        for (const auto& [k, v] : TRY(key_values(in, vars))) c["Labels"][k] = v;
        break;
      case Keyword::kWorkdir: {
        std::string w = TRY(single_word(in, vars));
        std::string dir =
            (w.starts_with('/') ? fs::path(w) : fs::path(workdir()) / w).lexically_normal();
        while (dir.size() > 1 && dir.ends_with('/')) dir.pop_back();
        c["WorkingDir"] = dir;
        break;
      }
      case Keyword::kUser:
        c["User"] = TRY(single_word(in, vars));
        break;
      case Keyword::kExpose:
        if (!c.contains("ExposedPorts") || !c["ExposedPorts"].is_object())
          c["ExposedPorts"] = Json::object();
        for (const auto& p : TRY(ports(in, vars))) c["ExposedPorts"][p] = Json::object();
        break;
      case Keyword::kCmd:
        c["Cmd"] = command_args(in);
        cmd_set_ = true;
        break;
      case Keyword::kEntrypoint:
        c["Entrypoint"] = command_args(in);
        if (!cmd_set_) c.erase("Cmd");
        break;
      default:
        break;
    }
    chain(fmt::format("{} -> {}", in.text, c.dump()));
    return {};
  }

  Result<void> run_step(const Instruction& in) {
    auto args = command_args(in);
    auto env = run_env();
    std::string user = config_["config"].value("User", "");
    Json key_doc = {{"run", args}, {"env", env}, {"cwd", workdir()}, {"user", user}};
    std::string key = chain_key(key_doc.dump());
    if (TRY(reuse(key, in))) return {};
    if (o_.runtime.empty())
      return make_error(ErrorCode::kUnavailable,
                        "line {}: RUN: vireo-runtime was not found next to vireod or on PATH",
                        in.line);

    ImageConfig pc;
    pc.cmd = args;
    pc.env = env;
    pc.working_dir = workdir();
    pc.user = user;
    ProcessConfig process = TRY_CTX(process_config(pc, layers_), "line {}: RUN", in.line);
    std::string output;
    auto blob = TRY(with_overlay([&](int root_fd, const fs::path& step) -> Result<void> {
      TRY(ensure_dir(root_fd, TRY(image_path_components(workdir())), 0, 0));
      auto mountpoints = missing_mountpoints(root_fd);
      bool resolv = prepare_resolv(root_fd);
      Json spec = container::default_spec();
      spec["process"]["terminal"] = false;
      apply_process_config(process, spec);
      spec["root"] = {{"path", (step / "rootfs").string()}, {"readonly", false}};
      spec["hostname"] = "vireo-build";
      Json namespaces = Json::array();
      for (const auto& ns : spec["linux"]["namespaces"])
        if (ns.value("type", "") != "network") namespaces.push_back(ns);
      spec["linux"]["namespaces"] = namespaces;
      if (resolv)
        spec["mounts"].push_back({{"destination", "/etc/resolv.conf"},
                                  {"type", "bind"},
                                  {"source", "/etc/resolv.conf"},
                                  {"options", {"rbind", "ro", "nosuid", "nodev", "noexec"}}});
      TRY(write_file_atomic(step / "config.json", spec.dump(2) + "\n", 0600));
      auto outcome = TRY(run_runtime(o_.runtime, scratch_ / "runtime", step, step / "output.log",
                                     progress_.stop_token()));
      output = std::move(outcome.output);
      if (outcome.exit_code != 0 || outcome.signal != 0) {
        std::string how = outcome.signal
                              ? fmt::format("was killed by signal {}", outcome.signal)
                              : fmt::format("failed with exit code {}", outcome.exit_code);
        std::string tail = last_lines(output, kOutputLines);
        return make_error(ErrorCode::kInvalidArgument, "RUN step {}/{} '{}' {}{}{}", index_, total_,
                          short_text(in.json ? fmt::format("{}", fmt::join(args, " ")) : in.rest),
                          how, tail.empty() ? "" : ": ", tail);
      }
      return remove_mountpoints(step / "upper", mountpoints);
    }));
    TRY(add_layer(blob, key, in));
    end_step(false, std::move(output));
    return {};
  }

  Result<void> copy_step(const Instruction& in) {
    bool add = in.keyword == Keyword::kAdd;
    const char* what = add ? "ADD" : "COPY";
    CopyArgs a = TRY(copy_args(in, lookup()));
    auto sources = TRY_CTX(ctx_.resolve(a.sources, add, what), "line {}", in.line);
    std::string dest_abs = a.dest.starts_with('/') ? a.dest : workdir() + "/" + a.dest;
    bool dest_is_dir = a.dest.ends_with('/') || a.dest == "." || a.dest.ends_with("/.");
    bool many = sources.size() > 1 || std::any_of(a.sources.begin(), a.sources.end(),
                                                  [](const std::string& s) { return has_glob(s); });
    if (many && !dest_is_dir)
      return make_error(ErrorCode::kInvalidArgument,
                        "line {}: {} with more than one source needs a destination directory "
                        "ending in '/', not '{}'",
                        in.line, what, a.dest);
    std::string content = TRY(content_hash(ctx_, sources));
    Json key_doc = {{"kind", what},       {"sources", a.sources}, {"dest", dest_abs},
                    {"dir", dest_is_dir}, {"chown", a.chown},     {"chmod", a.chmod.value_or(0)},
                    {"content", content}};
    std::string key = chain_key(key_doc.dump());
    if (TRY(reuse(key, in))) return {};
    Owner owner = TRY_CTX(resolve_owner(a.chown), "line {}: {} --chown", in.line, what);
    owner.chmod = a.chmod;
    auto blob = TRY(with_overlay([&](int root_fd, const fs::path&) -> Result<void> {
      return with_context(copy_sources(ctx_, sources, root_fd, dest_abs, dest_is_dir, owner),
                          fmt::format("line {}: {}", in.line, what));
    }));
    TRY(add_layer(blob, key, in));
    end_step(false, {});
    return {};
  }

  // --- layers ---------------------------------------------------------------------------------

  // Mounts the current layers over an empty upper directory, runs body on the mounted root,
  // and turns the upper directory into a layer. Every mount and file is gone afterwards.
  Result<LayerBlob> with_overlay(
      const std::function<Result<void>(int root_fd, const fs::path& step)>& body) {
    fs::path step = scratch_ / fmt::format("step-{}", index_);
    Rollback cleanup;
    cleanup.add([step] { (void)release_rootfs(step); });
    TRY(make_dirs(step / "rootfs", 0755));
    TRY(make_dirs(step / "upper", 0755));
    TRY(make_dirs(step / "work", 0700));
    std::vector<Layer> lower = layers_;
    if (lower.empty()) {  // FROM scratch: overlayfs needs a lower directory
      TRY(make_dirs(scratch_ / "empty", 0755));
      lower.push_back(Layer{Digest{}, scratch_ / "empty", {}, {}});
    }
    TRY(mount_overlay(lower, step / "upper", step / "work", step / "rootfs"));
    {
      Fd root(::open((step / "rootfs").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!root) return errno_error("open " + (step / "rootfs").string());
      TRY(body(root.get(), step));
    }
    if (::umount2((step / "rootfs").c_str(), 0) != 0)
      return errno_error("unmount " + (step / "rootfs").string());
    return write_layer(step / "upper", store_.blobs(), scratch_);
  }

  Result<void> add_layer(const LayerBlob& blob, const std::string& key, const Instruction& in) {
    Descriptor d{std::string(media::kOciLayerGzip), blob.blob.digest, blob.blob.size, {}, {}};
    TRY(push_layer(d, blob.diff_id));
    cache_.put(key, {d, blob.diff_id});
    history(in, false);
    return {};
  }

  Result<void> push_layer(const Descriptor& d, const Digest& diff_id) {
    if (descriptors_.size() >= kMaxLayers)
      return make_error(ErrorCode::kInvalidArgument, "more than {} layers", kMaxLayers);
    auto& layers = store_.layers();
    Result<Layer> layer = layers.has(diff_id) ? layers.get(diff_id) : unpack(d, diff_id);
    if (!layer && layers.has(diff_id)) layer = layers.get(diff_id);  // a concurrent unpack won
    if (!layer) return std::unexpected(std::move(layer.error()));
    descriptors_.push_back(d);
    diff_ids_.push_back(diff_id);
    layers_.push_back(std::move(*layer));
    return {};
  }

  Result<Layer> unpack(const Descriptor& d, const Digest& diff_id) {
    auto reader = TRY(store_.blobs().open(d.digest));
    return store_.layers().unpack([&](void* b, size_t n) { return reader.read(b, n); }, diff_id);
  }

  // A cache hit: the layer of the entry becomes this step's.
  Result<bool> reuse(const std::string& key, const Instruction& in) {
    auto entry = cache_.get(key);
    if (!entry) return false;
    if (!push_layer(entry->layer, entry->diff_id)) return false;
    history(in, false);
    end_step(true, {});
    return true;
  }

  // Mount points the runtime would create in the image (they would end up in the layer).
  std::vector<std::string> missing_mountpoints(int root_fd) {
    std::vector<std::string> out;
    struct stat st;
    for (const char* p : {"proc", "dev", "sys", "etc/resolv.conf"})
      if (::fstatat(root_fd, p, &st, AT_SYMLINK_NOFOLLOW) != 0) out.push_back(p);
    return out;
  }

  // The host's resolv.conf is bind-mounted (read-only) for package installs, onto the image's
  // regular file or onto an empty one made for it (removed again from the layer).
  bool prepare_resolv(int root_fd) {
    struct stat st;
    if (::stat("/etc/resolv.conf", &st) != 0) return false;
    if (::fstatat(root_fd, "etc/resolv.conf", &st, AT_SYMLINK_NOFOLLOW) == 0)
      return S_ISREG(st.st_mode);
    if (::fstatat(root_fd, "etc", &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
      return false;
    Fd f(::openat(root_fd, "etc/resolv.conf", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0644));
    return f.valid();
  }

  Result<void> remove_mountpoints(const fs::path& upper, const std::vector<std::string>& paths) {
    for (const auto& p : paths) {
      struct stat st;
      fs::path full = upper / p;
      if (::lstat(full.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode))
        ::rmdir(full.c_str());  // only when empty: a RUN may have put something there
      else if (S_ISREG(st.st_mode) && st.st_size == 0)
        ::unlink(full.c_str());
    }
    return {};
  }

  // --- state ----------------------------------------------------------------------------------

  Result<void> make_scratch() {
    fs::path tmp_root = store_.root() / "build-tmp";
    TRY(make_dirs(tmp_root, 0700));
    sweep_stale(tmp_root, o_.runtime);
    fs::path dir = tmp_root / fmt::format("{}-{}", ::getpid(), random_hex(6));
    TRY(make_dirs(dir / "runtime", 0700));
    scratch_ = dir;
    return {};
  }

  void chain(const std::string& text) { key_ = sha256_hex(key_ + "\n" + text); }
  std::string chain_key(const std::string& text) {
    chain(text);
    return key_;
  }

  void history(const Instruction& in, bool empty) {
    Json h = {
        {"created", now_timestamp()}, {"created_by", in.text}, {"comment", "vireo image build"}};
    if (empty) h["empty_layer"] = true;
    config_["history"].push_back(h);
  }

  std::string workdir() const {
    const Json& c = config_["config"];
    std::string w = c.contains("WorkingDir") && c["WorkingDir"].is_string()
                        ? c["WorkingDir"].get<std::string>()
                        : "";
    return w.empty() ? "/" : w;
  }

  std::vector<std::string> env() const {
    const Json& c = config_["config"];
    std::vector<std::string> out;
    if (c.contains("Env") && c["Env"].is_array())
      for (const auto& e : c["Env"])
        if (e.is_string()) out.push_back(e.get<std::string>());
    return out;
  }

  std::optional<std::string> env_value(std::string_view name) const {
    for (const auto& e : env())
      if (e.size() > name.size() && e.starts_with(name) && e[name.size()] == '=')
        return e.substr(name.size() + 1);
    return std::nullopt;
  }

  void set_env(const std::string& k, const std::string& v) {
    std::vector<std::string> out;
    bool replaced = false;
    for (auto& e : env()) {
      if (e.starts_with(k + "=")) {
        out.push_back(k + "=" + v);
        replaced = true;
      } else {
        out.push_back(e);
      }
    }
    if (!replaced) out.push_back(k + "=" + v);
    config_["config"]["Env"] = out;
  }

  // RUN's environment: ENV, then the ARGs ENV does not set, the proxy arguments and PATH.
  std::vector<std::string> run_env() const {
    auto out = env();
    for (const auto& [k, v] : args_)
      if (v && !env_value(k)) out.push_back(k + "=" + *v);
    for (auto name : kProxyArgs) {
      auto it = o_.build_args.find(std::string(name));
      if (it != o_.build_args.end() && !args_.contains(it->first) && !env_value(name))
        out.push_back(it->first + "=" + it->second);
    }
    if (!env_value("PATH")) out.emplace_back(kDefaultPath);
    return out;
  }

  Lookup lookup() const {
    return [this](std::string_view name) -> std::optional<std::string> {
      if (auto v = env_value(name)) return v;
      auto it = args_.find(std::string(name));
      if (it != args_.end()) return it->second;
      return std::nullopt;
    };
  }

  Lookup global_lookup() const {
    return [this](std::string_view name) -> std::optional<std::string> {
      auto it = global_args_.find(std::string(name));
      if (it != global_args_.end()) return it->second;
      return std::nullopt;
    };
  }

  // --chown USER[:GROUP]: names from the image's /etc/passwd and /etc/group; without a group,
  // the gid is the uid's number (as Docker does).
  Result<Owner> resolve_owner(const std::string& chown) {
    Owner o;
    if (chown.empty()) return o;
    ImageConfig c;
    c.cmd = {"chown"};
    c.working_dir = "/";
    c.user = chown;
    ProcessConfig p = TRY(process_config(c, layers_));
    o.uid = p.uid.value_or(0);
    o.gid = chown.find(':') == std::string::npos ? static_cast<gid_t>(o.uid) : p.gid.value_or(0);
    return o;
  }

  Result<BuildResult> commit() {
    config_["created"] = now_timestamp();
    Json diff_ids = Json::array();
    for (const auto& d : diff_ids_) diff_ids.push_back(d.str());
    config_["rootfs"] = {{"type", "layers"}, {"diff_ids", diff_ids}};
    BlobInfo config_blob = TRY(store_.blobs().put(config_.dump()));
    Manifest m;
    m.media_type = media::kOciManifest;
    m.config = {std::string(media::kOciConfig), config_blob.digest, config_blob.size, {}, {}};
    m.layers = descriptors_;
    std::string tag =
        o_.tag.empty() ? "vireo-build:" + config_blob.digest.hex.substr(0, 12) : o_.tag;
    BuildResult r;
    r.image = TRY(store_.commit(m.to_json().dump(), tag));
    r.steps = total_;
    r.cached = cached_;
    r.log = std::move(log_);
    return r;
  }

  ImageStore& store_;
  const BuildOptions& o_;
  BuildProgress& progress_;
  Context ctx_;
  Cache cache_;
  fs::path scratch_;
  std::string key_ = sha256_hex("FROM scratch");
  Json config_;
  std::vector<Descriptor> descriptors_;
  std::vector<Digest> diff_ids_;
  std::vector<Layer> layers_;
  std::map<std::string, std::optional<std::string>> global_args_;
  std::map<std::string, std::optional<std::string>> args_;
  bool cmd_set_ = false;
  int index_ = 0;
  int total_ = 0;
  int cached_ = 0;
  std::vector<StepReport> log_;
};

Result<std::string> read_containerfile(const fs::path& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return errno_error("Containerfile " + path.string());
  if (!S_ISREG(st.st_mode))
    return make_error(ErrorCode::kInvalidArgument, "Containerfile {}: not a regular file",
                      path.string());
  if (static_cast<size_t>(st.st_size) > kMaxContainerfileSize)
    return make_error(ErrorCode::kTooLarge, "Containerfile {}: larger than {} bytes", path.string(),
                      kMaxContainerfileSize);
  return TRY_CTX(read_file(path), "Containerfile {}", path.string());
}

}  // namespace

Result<BuildResult> build(ImageStore& store, const BuildOptions& options, BuildProgress& progress) {
  if (!options.containerfile.is_absolute() || !options.context.is_absolute())
    return make_error(ErrorCode::kInvalidArgument,
                      "the Containerfile and the context must be absolute paths");
  std::string text = TRY(read_containerfile(options.containerfile));
  Containerfile file = TRY_CTX(parse_containerfile(text), "{}", options.containerfile.string());
  if (!options.tag.empty()) {
    auto ref = TRY_CTX(Reference::parse(options.tag), "tag");
    if (ref.digest)
      return make_error(ErrorCode::kInvalidArgument, "tag '{}': must not name a digest",
                        options.tag);
  }
  Context ctx = TRY(Context::open(options.context));
  auto work = store.begin_work();  // no prune while steps are stored but not tagged
  Builder b(store, options, progress, std::move(ctx));
  return b.run(file);
}

}  // namespace vireo::image::build
