#include "image/layer_unpack.h"

#include <sys/statvfs.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "base/fd.h"
#include "image/tar_stream.h"
#include "image/tree.h"

namespace vireo::image {

namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

// What an entry says about its inode, kept for directories until the end of the unpack (their
// mode and mtime must be set after their children are made).
struct Meta {
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  timespec times[2] = {};
  std::vector<std::pair<std::string, std::string>> xattrs;
};

struct DeferredDir {
  std::vector<std::string> path;
  Meta meta;
};

Meta meta_of(archive_entry* e) {
  Meta m;
  m.mode = archive_entry_perm(e) & 07777;
  m.uid = static_cast<uid_t>(archive_entry_uid(e));
  m.gid = static_cast<gid_t>(archive_entry_gid(e));
  m.times[1] = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
  m.times[0] = archive_entry_atime_is_set(e)
                   ? timespec{archive_entry_atime(e), archive_entry_atime_nsec(e)}
                   : m.times[1];
  for (auto& t : m.times)
    if (t.tv_nsec < 0 || t.tv_nsec > 999999999) t.tv_nsec = 0;
  const char* name;
  const void* value;
  size_t size;
  archive_entry_xattr_reset(e);
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    // A layer must not forge overlayfs metadata (redirects, origins, its own opaque markers).
    if (std::string_view(name).starts_with("trusted.overlay.")) continue;
    m.xattrs.emplace_back(name, std::string(static_cast<const char*>(value), size));
  }
  return m;
}

std::string shown(std::string_view name) {
  std::string out;
  for (char c : name.substr(0, 200)) out += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
  return out;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "/") + p;
  return out.empty() ? "." : out;
}

class Extractor {
 public:
  Extractor(int root_fd, const UnpackOptions& o) : root_(root_fd), opts_(o) {}
  Result<UnpackSummary> run(const ReadFn& source);

 private:
  Result<void> entry(archive_entry* e);
  Result<void> whiteout(std::vector<std::string> parts);
  Result<void> hardlink(int parent, const std::string& leaf, const std::vector<std::string>& at,
                        std::string_view target);
  Result<void> regular(int parent, const std::string& leaf, archive_entry* e);
  Result<void> directory(int parent, const std::string& leaf, std::vector<std::string> path,
                         archive_entry* e);
  Result<void> symlink(int parent, const std::string& leaf, archive_entry* e);
  Result<void> special(int parent, const std::string& leaf, archive_entry* e);
  Result<void> apply(int fd, const Meta& m, std::string_view what);
  Result<void> set_xattrs(int fd, const Meta& m);
  Result<void> finish_dirs();

  int root_;
  UnpackOptions opts_;
  TarStream tar_;
  UnpackSummary summary_;
  std::vector<DeferredDir> dirs_;
  bool truncated_end_ = false;
  uint64_t written_ = 0;
  uint64_t max_bytes_ = 0;
};

Result<UnpackSummary> Extractor::run(const ReadFn& source) {
  max_bytes_ = opts_.max_bytes;
  if (max_bytes_ == 0) {
    struct statvfs vfs {};
    if (::fstatvfs(root_, &vfs) != 0) return errno_error("statvfs of the unpack destination");
    uint64_t free_bytes = uint64_t{vfs.f_bavail} * vfs.f_frsize;
    max_bytes_ = free_bytes > kDiskReserve ? free_bytes - kDiskReserve : 0;
  }
  TRY(tar_.open(source));
  for (;;) {
    archive_entry* e = TRY(tar_.next());
    if (!e) break;
    if (summary_.entries >= opts_.max_entries)
      return make_error(ErrorCode::kTooLarge,
                        "more than {} entries: refusing what looks like a decompression bomb",
                        opts_.max_entries);
    const char* name = archive_entry_pathname(e);
    TRY_CTX(entry(e), "entry '{}'", shown(name ? name : ""));
    ++summary_.entries;
    if (truncated_end_) break;
  }
  TRY(finish_dirs());
  summary_.diff_id = TRY(tar_.finish());
  summary_.tar_size = tar_.size();
  return summary_;
}

Result<void> Extractor::entry(archive_entry* e) {
  const char* name = archive_entry_pathname(e);
  if (!name || !*name) return make_error(ErrorCode::kInvalidArgument, "entry without a name");
  auto parts = TRY(split_relative_path(name));
  if (parts.empty()) return {};  // the root directory itself
  if (opts_.mode == UnpackMode::kLayer && parts.back().starts_with(kWhiteoutPrefix))
    return whiteout(std::move(parts));
  std::string leaf = parts.back();
  std::vector<std::string> dir(parts.begin(), parts.end() - 1);
  Fd parent = TRY(open_dir_in(root_, dir, CreateDirs::kYes));
  if (const char* target = archive_entry_hardlink(e))
    return hardlink(parent.get(), leaf, parts, target);
  switch (archive_entry_filetype(e)) {
    case AE_IFREG:
      return regular(parent.get(), leaf, e);
    case AE_IFDIR:
      return directory(parent.get(), leaf, std::move(parts), e);
    case AE_IFLNK:
      return symlink(parent.get(), leaf, e);
    default:
      return special(parent.get(), leaf, e);
  }
}

Result<void> Extractor::whiteout(std::vector<std::string> parts) {
  std::string name = parts.back();
  parts.pop_back();
  if (name == kOpaqueMarker) {
    Fd dir = TRY(open_dir_in(root_, parts, CreateDirs::kYes));
    if (opts_.privileged && ::fsetxattr(dir.get(), "trusted.overlay.opaque", "y", 1, 0) == 0)
      return {};
    summary_.opaque_dirs.push_back(join(parts));
    return {};
  }
  if (name.starts_with(".wh..wh.")) return {};  // other AUFS metadata: meaningless here
  std::string target = name.substr(kWhiteoutPrefix.size());
  if (target.empty() || target == "." || target == "..")
    return make_error(ErrorCode::kInvalidArgument, "invalid whiteout name");
  Fd parent = TRY(open_dir_in(root_, parts, CreateDirs::kYes));
  TRY(remove_at(parent.get(), target));
  if (opts_.privileged && ::mknodat(parent.get(), target.c_str(), S_IFCHR, makedev(0, 0)) == 0)
    return {};
  parts.push_back(target);
  summary_.whiteouts.push_back(join(parts));
  return {};
}

Result<void> Extractor::hardlink(int parent, const std::string& leaf,
                                 const std::vector<std::string>& at, std::string_view target) {
  auto tparts = TRY_CTX(split_relative_path(target), "hard link target '{}'", shown(target));
  if (tparts.empty())
    return make_error(ErrorCode::kInvalidArgument, "hard link to the root directory");
  if (tparts == at) return {};
  std::string tleaf = tparts.back();
  tparts.pop_back();
  auto tparent = open_dir_in(root_, tparts, CreateDirs::kNo);
  if (!tparent)
    return make_error(ErrorCode::kInvalidArgument, "hard link target '{}' is not in this archive",
                      shown(target));
  TRY(remove_at(parent, leaf));
  if (::linkat(tparent->get(), tleaf.c_str(), parent, leaf.c_str(), 0) == 0) return {};
  if (errno == ENOENT)
    return make_error(ErrorCode::kInvalidArgument, "hard link target '{}' is not in this archive",
                      shown(target));
  return errno_error(fmt::format("hard link to '{}'", shown(target)));
}

Result<void> Extractor::regular(int parent, const std::string& leaf, archive_entry* e) {
  TRY(remove_at(parent, leaf));
  Fd fd(::openat(parent, leaf.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return errno_error("create");
  const void* buf;
  size_t size;
  la_int64_t offset;
  la_int64_t end = 0;
  for (;;) {
    int r = archive_read_data_block(tar_.reader(), &buf, &size, &offset);
    if (r == ARCHIVE_EOF) break;
    // Some writers (umoci insert) end the stream right after the last file's data, without
    // block padding or end marker; like Go's tar reader, take that as the end of the archive.
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN && tar_.stream_ended() &&
        end == archive_entry_size(e)) {
      truncated_end_ = true;
      break;
    }
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return std::unexpected(tar_.error("read data"));
    end = std::max<la_int64_t>(end, offset + static_cast<la_int64_t>(size));
    written_ += size;
    if (written_ > max_bytes_)
      return make_error(ErrorCode::kTooLarge,
                        "the data expands beyond {} bytes ({}): refusing what looks like a "
                        "decompression bomb",
                        max_bytes_,
                        opts_.max_bytes ? "the limit" : "the free space less a 1 GiB reserve");
    for (size_t done = 0; done < size;) {
      ssize_t n = ::pwrite(fd.get(), static_cast<const char*>(buf) + done, size - done,
                           offset + static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_error("write");
      done += static_cast<size_t>(n);
    }
  }
  if (archive_entry_size_is_set(e) && archive_entry_size(e) >= 0 &&
      ::ftruncate(fd.get(), archive_entry_size(e)) != 0)
    return errno_error("truncate");
  return apply(fd.get(), meta_of(e), "file");
}

Result<void> Extractor::directory(int parent, const std::string& leaf,
                                  std::vector<std::string> path, archive_entry* e) {
  struct stat st;
  if (::fstatat(parent, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
    TRY(remove_at(parent, leaf));
  if (::mkdirat(parent, leaf.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("mkdir");
  dirs_.push_back({std::move(path), meta_of(e)});
  return {};
}

Result<void> Extractor::symlink(int parent, const std::string& leaf, archive_entry* e) {
  const char* target = archive_entry_symlink(e);
  if (!target || !*target)
    return make_error(ErrorCode::kInvalidArgument, "symlink without a target");
  TRY(remove_at(parent, leaf));
  if (::symlinkat(target, parent, leaf.c_str()) != 0) return errno_error("symlink");
  Meta m = meta_of(e);
  if (opts_.privileged && ::fchownat(parent, leaf.c_str(), m.uid, m.gid, AT_SYMLINK_NOFOLLOW) != 0)
    return errno_error("chown symlink");
  if (::utimensat(parent, leaf.c_str(), m.times, AT_SYMLINK_NOFOLLOW) != 0)
    return errno_error("set symlink times");
  return {};
}

Result<void> Extractor::special(int parent, const std::string& leaf, archive_entry* e) {
  mode_t type = archive_entry_filetype(e);
  bool device = type == AE_IFCHR || type == AE_IFBLK;
  if ((device && !opts_.privileged) || (!device && type != AE_IFIFO)) {
    ++summary_.skipped;
    return {};
  }
  TRY(remove_at(parent, leaf));
  if (::mknodat(parent, leaf.c_str(), type | 0600, archive_entry_rdev(e)) != 0)
    return errno_error("mknod");
  // Opened with O_PATH so that neither a FIFO nor a device is opened for I/O.
  Fd fd(::openat(parent, leaf.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return errno_error("open node");
  Meta m = meta_of(e);
  std::string proc = fmt::format("/proc/self/fd/{}", fd.get());
  if (opts_.privileged && ::fchownat(fd.get(), "", m.uid, m.gid, AT_EMPTY_PATH) != 0)
    return errno_error("chown node");
  if (::chmod(proc.c_str(), m.mode) != 0) return errno_error("chmod node");
  if (::utimensat(AT_FDCWD, proc.c_str(), m.times, 0) != 0) return errno_error("set node times");
  return {};
}

Result<void> Extractor::apply(int fd, const Meta& m, std::string_view what) {
  // chown first: it clears set-id bits and file capabilities, which chmod and the xattrs set.
  if (opts_.privileged && ::fchown(fd, m.uid, m.gid) != 0)
    return errno_error(fmt::format("chown {}", what));
  if (::fchmod(fd, m.mode) != 0) return errno_error(fmt::format("chmod {}", what));
  TRY(set_xattrs(fd, m));
  if (::futimens(fd, m.times) != 0) return errno_error(fmt::format("set {} times", what));
  return {};
}

Result<void> Extractor::set_xattrs(int fd, const Meta& m) {
  for (const auto& [name, value] : m.xattrs) {
    if (::fsetxattr(fd, name.c_str(), value.data(), value.size(), 0) == 0) continue;
    // Unprivileged, trusted.* and security.* cannot be set; some file systems have no xattrs.
    if (errno == ENOTSUP || (!opts_.privileged && (errno == EPERM || errno == EACCES))) continue;
    return errno_error(fmt::format("set xattr {}", shown(name)));
  }
  return {};
}

Result<void> Extractor::finish_dirs() {
  for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
    // A later entry may have replaced the directory (by a file, or a symlink never followed).
    auto fd = open_dir_in(root_, it->path, CreateDirs::kNo);
    if (!fd) continue;
    TRY_CTX(apply(fd->get(), it->meta, "directory"), "entry '{}'", shown(join(it->path)));
  }
  return {};
}

}  // namespace

Result<UnpackSummary> unpack_tar(const ReadFn& source, int dest_dir_fd,
                                 const UnpackOptions& options) {
  Extractor x(dest_dir_fd, options);
  return x.run(source);
}

Result<UnpackSummary> unpack_tar_file(const std::filesystem::path& tar, int dest_dir_fd,
                                      const UnpackOptions& options) {
  Fd fd(::open(tar.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("open {}", tar.string()));
  ReadFn source = [&](void* buf, size_t len) -> Result<size_t> {
    ssize_t n = ::read(fd.get(), buf, len);
    if (n < 0) return errno_error(fmt::format("read {}", tar.string()));
    return static_cast<size_t>(n);
  };
  return with_context(unpack_tar(source, dest_dir_fd, options), tar.string());
}

Result<Digest> tar_diff_id(const ReadFn& source) {
  TarStream tar;
  TRY(tar.open(source));
  return tar.finish();
}

}  // namespace vireo::image
