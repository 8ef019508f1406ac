#include "sandbox/app_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <functional>

#include "base/fd.h"
#include "base/strings.h"
#include "base/subprocess.h"

namespace vireo::sandbox {

namespace {

constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

bool is_whiteout(const struct stat& st) {
  return S_ISCHR(st.st_mode) && st.st_rdev == 0;
}

// Opaque directories hide the host directory below them; each overlay implementation marks
// them with its own xattr.
bool is_opaque(int dir_fd) {
  for (const char* name : {"user.overlay.opaque", "trusted.overlay.opaque",
                           "user.fuseoverlayfs.opaque", "trusted.fuseoverlayfs.opaque"}) {
    char v = 0;
    if (::fgetxattr(dir_fd, name, &v, 1) == 1 && v == 'y') return true;
  }
  return false;
}

char type_of(const struct stat& st) {
  if (S_ISREG(st.st_mode)) return 'f';
  if (S_ISDIR(st.st_mode)) return 'd';
  if (S_ISLNK(st.st_mode)) return 'l';
  return 'o';
}

bool host_has(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

struct Walk {
  std::string host_prefix;   // what the store's top stands for on the host: "" or the home
  std::string shown_prefix;  // how paths are shown: "" or "~"
  std::vector<StoreChange>* out;

  Result<void> dir(int fd, const std::string& rel) {
    DIR* d = ::fdopendir(::dup(fd));
    if (!d) return errno_error("read store folder " + rel);
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    for (const auto& n : names) TRY(entry(fd, rel, n));
    return {};
  }

  Result<void> entry(int parent, const std::string& rel, const std::string& name) {
    struct stat st;
    if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      return errno_error("stat store entry " + rel + "/" + name);
    // fuse-overlayfs marks deletions with ".wh.NAME" files where it cannot make devices.
    bool wh_file = name.starts_with(".wh.") && name != ".wh..wh..opq";
    if (name == ".wh..wh..opq") return {};
    std::string path = rel + "/" + (wh_file ? name.substr(4) : name);
    StoreChange c{shown_prefix + path, ChangeKind::kAdded, type_of(st),
                  static_cast<uint64_t>(st.st_size)};
    if (wh_file || is_whiteout(st)) {
      c.kind = ChangeKind::kDeleted;
      c.type = 'o';
      out->push_back(c);
      return {};
    }
    bool on_host = host_has(host_prefix + path);
    if (!S_ISDIR(st.st_mode)) {
      c.kind = on_host ? ChangeKind::kModified : ChangeKind::kAdded;
      out->push_back(c);
      return {};
    }
    Fd sub(::openat(parent, name.c_str(), kDirFlags));
    if (!sub) return errno_error("open store folder " + path);
    if (!on_host || is_opaque(sub.get())) {
      c.kind = on_host ? ChangeKind::kReplacedDir : ChangeKind::kAdded;
      out->push_back(c);
    }
    return dir(sub.get(), path);
  }
};

Result<void> walk_top(const std::string& top, const std::string& host_prefix,
                      const std::string& shown, std::vector<StoreChange>& out) {
  Fd fd(::open(top.c_str(), kDirFlags));
  if (!fd) {
    if (errno == ENOENT) return {};
    return errno_error("open " + top);
  }
  Walk w{host_prefix, shown, &out};
  return w.dir(fd.get(), "");
}

// Removes name under parent and everything below it, never following a symlink.
Result<void> remove_tree_at(int parent, const std::string& name) {
  struct stat st;
  if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return errno_error("stat " + name);
  }
  if (S_ISDIR(st.st_mode)) {
    Fd sub(::openat(parent, name.c_str(), kDirFlags));
    if (!sub) return errno_error("open " + name);
    DIR* d = ::fdopendir(::dup(sub.get()));
    if (!d) return errno_error("read " + name);
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    for (const auto& n : names) TRY(remove_tree_at(sub.get(), n));
    if (::unlinkat(parent, name.c_str(), AT_REMOVEDIR) != 0) return errno_error("remove " + name);
    return {};
  }
  if (::unlinkat(parent, name.c_str(), 0) != 0) return errno_error("remove " + name);
  return {};
}

// Opens the folder at rel (below top) without following any symlink on the way.
Result<Fd> open_below(const std::string& top, const std::string& rel) {
  Fd fd(::open(top.c_str(), kDirFlags));
  if (!fd) return errno_error("open " + top);
  for (const auto& part : split(rel, '/')) {
    if (part.empty()) continue;
    Fd next(::openat(fd.get(), part.c_str(), kDirFlags));
    if (!next) return errno_error("open " + top + rel);
    fd = std::move(next);
  }
  return fd;
}

// Store files are configuration; diffing something huge is not what the user asked for.
Result<std::string> read_small_file(int fd, const std::string& shown) {
  constexpr size_t kLimit = 8 << 20;
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) return errno_error("read store copy of " + shown);
    if (n == 0) return data;
    data.append(buf, n);
    if (data.size() > kLimit)
      return make_error(ErrorCode::kTooLarge, "{} is over 8 MiB; compare it by hand", shown);
  }
}

std::string parent_of(const std::string& p) {
  return p.substr(0, p.rfind('/'));
}
std::string base_of(const std::string& p) {
  return p.substr(p.rfind('/') + 1);
}

}  // namespace

std::string_view to_string(ChangeKind kind) {
  switch (kind) {
    case ChangeKind::kAdded:
      return "added";
    case ChangeKind::kModified:
      return "modified";
    case ChangeKind::kDeleted:
      return "deleted";
    case ChangeKind::kReplacedDir:
      return "replaced";
  }
  return "?";
}

Result<Fd> lock_app(const AppPaths& app) {
  std::string path = app.app + "/.lock";
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return errno_error("open " + path);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
    return make_error(ErrorCode::kConflict,
                      "app {} is running (its store is in use); stop it first", app.name);
  return fd;
}

bool app_running(const AppPaths& app) {
  struct stat st;
  return ::stat((app.app + "/.lock").c_str(), &st) == 0 && !lock_app(app);
}

Result<std::vector<StoreChange>> list_store(const AppPaths& app) {
  std::vector<StoreChange> out;
  TRY(walk_top(app.store, "", "", out));
  TRY(walk_top(app.home, home_directory(), "~", out));
  std::sort(out.begin(), out.end(),
            [](const StoreChange& a, const StoreChange& b) { return a.path < b.path; });
  return out;
}

Result<std::string> diff_store(const AppPaths& app) {
  auto changes = TRY(list_store(app));
  std::string out;
  std::string home = home_directory();
  for (const auto& c : changes) {
    bool in_home = c.path.starts_with("~");
    std::string rel = in_home ? c.path.substr(1) : c.path;
    std::string host = (in_home ? home : "") + rel;
    if (c.type != 'f' || c.kind == ChangeKind::kDeleted) {
      out += fmt::format("{} {}{}\n", to_string(c.kind), c.path, c.type == 'd' ? "/" : "");
      continue;
    }
    // The store file is opened without following links and handed to diff by fd.
    auto dir = TRY(open_below(in_home ? app.home : app.store, parent_of(rel)));
    Fd file(::openat(dir.get(), base_of(rel).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!file) return errno_error("open store copy of " + c.path);
    auto content = TRY(read_small_file(file.get(), c.path));
    RunOptions in;
    in.input = std::move(content);
    in.timeout = std::chrono::seconds(30);
    auto r = run_process({"diff", "-u", "--label", "host:" + c.path, "--label", "app:" + c.path,
                          c.kind == ChangeKind::kAdded ? "/dev/null" : host, "-"},
                         in);
    if (!r) return std::unexpected(r.error());
    if (r->exit_code > 1) return make_error(ErrorCode::kIo, "diff {}: {}", c.path, r->err);
    out += r->out;
  }
  return out;
}

Result<void> reset_store(const AppPaths& app, const std::string& path) {
  if (path.empty()) {
    for (const auto& top : {app.store, app.home}) {
      TRY(remove_tree_at(AT_FDCWD, top));
      if (::mkdir(top.c_str(), 0755) != 0 && errno != EEXIST) return errno_error("mkdir " + top);
    }
    return {};
  }
  bool in_home = path.starts_with("~/");
  std::string rel = TRY(checked_absolute_path(in_home ? path.substr(1) : path, "store path"));
  if (rel == "/")
    return make_error(ErrorCode::kInvalidArgument, "store path '{}': name a file or folder", path);
  auto dir = open_below(in_home ? app.home : app.store, parent_of(rel));
  struct stat st;
  for (const auto& name : {base_of(rel), ".wh." + base_of(rel)}) {
    if (dir && ::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
      return remove_tree_at(dir->get(), name);
  }
  return make_error(ErrorCode::kNotFound, "app {} has no stored change at {}", app.name, path);
}

}  // namespace vireo::sandbox
