#include "image/build/layer_diff.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <map>
#include <memory>
#include <vector>

#include "base/fd.h"
#include "image/tree.h"

namespace vireo::image::build {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kOverlayPrefix = "trusted.overlay.";

// Compresses what the tar writer produces into a file, hashing the uncompressed stream.
class GzipSink {
 public:
  explicit GzipSink(int fd) : fd_(fd) {}
  ~GzipSink() {
    if (init_) deflateEnd(&zs_);
  }
  Result<void> open() {
    // windowBits 15 + 16: a gzip header and trailer.
    if (deflateInit2(&zs_, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      return make_error(ErrorCode::kInternal, "deflateInit2 failed");
    init_ = true;
    return {};
  }
  Result<void> write(const void* data, size_t size) {
    hasher_.update(data, size);
    zs_.next_in = static_cast<Bytef*>(const_cast<void*>(data));
    zs_.avail_in = static_cast<uInt>(size);
    return pump(Z_NO_FLUSH);
  }
  Result<void> finish() { return pump(Z_FINISH); }
  Digest diff_id() const { return hasher_.digest(); }

 private:
  Result<void> pump(int flush) {
    unsigned char out[65536];
    for (;;) {
      zs_.next_out = out;
      zs_.avail_out = sizeof out;
      int r = deflate(&zs_, flush);
      if (r == Z_STREAM_ERROR) return make_error(ErrorCode::kInternal, "deflate failed");
      size_t n = sizeof out - zs_.avail_out;
      for (size_t done = 0; done < n;) {
        ssize_t w = ::write(fd_, out + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno_error("write layer");
        done += static_cast<size_t>(w);
      }
      if (flush == Z_FINISH ? r == Z_STREAM_END : zs_.avail_out != 0) return {};
    }
  }

  int fd_;
  z_stream zs_{};
  bool init_ = false;
  Hasher hasher_;
};

class Writer {
 public:
  Writer(archive* a, GzipSink& sink) : a_(a), sink_(sink) {}

  static la_ssize_t write_cb(archive*, void* self, const void* buf, size_t n) {
    auto* w = static_cast<Writer*>(self);
    auto r = w->sink_.write(buf, n);
    if (!r) {
      w->error_ = r.error();
      return -1;
    }
    return static_cast<la_ssize_t>(n);
  }

  Result<void> walk(int dir_fd, const std::string& prefix, size_t depth) {
    if (depth > kMaxPathDepth)
      return make_error(ErrorCode::kInvalidArgument, "{}: deeper than {} components", prefix,
                        kMaxPathDepth);
    for (const auto& name : TRY(list(dir_fd, prefix))) {
      std::string path = prefix.empty() ? name : prefix + "/" + name;
      struct stat st;
      if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno_error("stat " + path);
      TRY(entry(dir_fd, name, path, st, depth));
    }
    return {};
  }

  std::optional<Error>& error() { return error_; }

 private:
  Result<std::vector<std::string>> list(int dir_fd, const std::string& where) {
    int dup = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dup < 0) return errno_error("open " + (where.empty() ? "." : where));
    DIR* d = ::fdopendir(dup);
    if (!d) {
      ::close(dup);
      return errno_error("list " + where);
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

  Result<void> entry(int dir_fd, const std::string& name, const std::string& path,
                     const struct stat& st, size_t depth) {
    std::string parent = path.substr(0, path.size() - name.size());
    if (S_ISCHR(st.st_mode) && st.st_rdev == 0) return whiteout(parent + ".wh." + name, st);
    if (S_ISSOCK(st.st_mode)) return {};
    if (S_ISDIR(st.st_mode)) {
      Fd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!fd) return errno_error("open " + path);
      auto xattrs = TRY(read_xattrs(fd.get(), path));
      TRY(header(path, st, xattrs, nullptr, nullptr));
      if (opaque_) TRY(whiteout(path + "/.wh..wh..opq", st));
      return walk(fd.get(), path, depth + 1);
    }
    if (S_ISLNK(st.st_mode)) {
      std::string target(PATH_MAX, '\0');
      ssize_t n = ::readlinkat(dir_fd, name.c_str(), target.data(), target.size());
      if (n < 0) return errno_error("readlink " + path);
      target.resize(static_cast<size_t>(n));
      return header(path, st, {}, target.c_str(), nullptr);
    }
    if (!S_ISREG(st.st_mode)) return header(path, st, {}, nullptr, nullptr);  // fifo, device
    if (st.st_nlink > 1) {
      auto key = std::make_pair(st.st_dev, st.st_ino);
      auto it = links_.find(key);
      if (it != links_.end()) return header(path, st, {}, nullptr, it->second.c_str());
      links_[key] = path;
    }
    Fd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return errno_error("open " + path);
    auto xattrs = TRY(read_xattrs(fd.get(), path));
    TRY(header(path, st, xattrs, nullptr, nullptr));
    return copy_data(fd.get(), path, static_cast<uint64_t>(st.st_size));
  }

  Result<std::vector<std::pair<std::string, std::string>>> read_xattrs(int fd,
                                                                       const std::string& path) {
    opaque_ = false;
    std::vector<std::pair<std::string, std::string>> out;
    ssize_t size = ::flistxattr(fd, nullptr, 0);
    if (size <= 0) return out;
    std::string names(static_cast<size_t>(size), '\0');
    size = ::flistxattr(fd, names.data(), names.size());
    if (size < 0) return errno_error("list xattrs of " + path);
    names.resize(static_cast<size_t>(size));
    for (size_t pos = 0; pos < names.size();) {
      std::string name(names.c_str() + pos);
      pos += name.size() + 1;
      if (name.empty() || name == "security.selinux") continue;
      std::string value(65536, '\0');
      ssize_t n = ::fgetxattr(fd, name.c_str(), value.data(), value.size());
      if (n < 0) continue;
      value.resize(static_cast<size_t>(n));
      if (name.starts_with(kOverlayPrefix)) {
        std::string_view what = std::string_view(name).substr(kOverlayPrefix.size());
        if (what == "opaque" && value == "y") opaque_ = true;
        if (what == "redirect" || what == "metacopy")
          return make_error(ErrorCode::kUnavailable,
                            "{}: overlayfs {} is on (the upper directory does not hold the "
                            "whole change); mount with redirect_dir=off,metacopy=off",
                            path, what);
        continue;
      }
      out.emplace_back(std::move(name), std::move(value));
    }
    return out;
  }

  Result<void> whiteout(const std::string& path, const struct stat& st) {
    struct stat w {};
    w.st_mode = S_IFREG;
    w.st_mtim = st.st_mtim;
    return header(path, w, {}, nullptr, nullptr);
  }

  Result<void> header(const std::string& path, const struct stat& st,
                      const std::vector<std::pair<std::string, std::string>>& xattrs,
                      const char* symlink, const char* hardlink) {
    std::unique_ptr<archive_entry, void (*)(archive_entry*)> e(archive_entry_new(),
                                                               archive_entry_free);
    archive_entry_set_pathname(e.get(), path.c_str());
    archive_entry_set_mode(e.get(), st.st_mode);
    archive_entry_set_uid(e.get(), st.st_uid);
    archive_entry_set_gid(e.get(), st.st_gid);
    archive_entry_set_mtime(e.get(), st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    archive_entry_set_size(e.get(), S_ISREG(st.st_mode) && !hardlink ? st.st_size : 0);
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      archive_entry_set_rdevmajor(e.get(), major(st.st_rdev));
      archive_entry_set_rdevminor(e.get(), minor(st.st_rdev));
    }
    if (symlink) archive_entry_set_symlink(e.get(), symlink);
    if (hardlink) archive_entry_set_hardlink(e.get(), hardlink);
    for (const auto& [k, v] : xattrs)
      archive_entry_xattr_add_entry(e.get(), k.c_str(), v.data(), v.size());
    if (archive_write_header(a_, e.get()) != ARCHIVE_OK) return fail(path);
    return {};
  }

  Result<void> copy_data(int fd, const std::string& path, uint64_t size) {
    char buf[65536];
    uint64_t done = 0;
    while (done < size) {
      ssize_t n = ::read(fd, buf, std::min<uint64_t>(sizeof buf, size - done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_error("read " + path);
      if (n == 0) return make_error(ErrorCode::kIo, "{}: changed while it was read", path);
      if (archive_write_data(a_, buf, static_cast<size_t>(n)) < 0) return fail(path);
      done += static_cast<uint64_t>(n);
    }
    return {};
  }

  std::unexpected<Error> fail(const std::string& path) {
    if (error_) return std::unexpected(*error_);
    return make_error(ErrorCode::kIo, "layer entry {}: {}", path, archive_error_string(a_));
  }

  archive* a_;
  GzipSink& sink_;
  std::optional<Error> error_;
  bool opaque_ = false;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
};

Result<Digest> write_tar(const fs::path& upper, int out_fd) {
  Fd root(::open(upper.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root) return errno_error("open " + upper.string());
  GzipSink sink(out_fd);
  TRY(sink.open());
  archive* a = archive_write_new();
  std::unique_ptr<archive, int (*)(archive*)> guard(a, archive_write_free);
  archive_write_set_format_pax_restricted(a);
  Writer w(a, sink);
  if (archive_write_open2(a, &w, nullptr, &Writer::write_cb, nullptr, nullptr) != ARCHIVE_OK)
    return make_error(ErrorCode::kIo, "open layer tar: {}", archive_error_string(a));
  TRY(w.walk(root.get(), "", 0));
  if (archive_write_close(a) != ARCHIVE_OK) {
    if (w.error()) return std::unexpected(*w.error());
    return make_error(ErrorCode::kIo, "close layer tar: {}", archive_error_string(a));
  }
  TRY(sink.finish());
  return sink.diff_id();
}

}  // namespace

Result<LayerBlob> write_layer(const fs::path& upper, BlobStore& blobs, const fs::path& scratch) {
  std::string tmp = (scratch / "layer-XXXXXX").string();
  Fd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd) return errno_error("create " + tmp);
  struct Unlink {
    std::string path;
    ~Unlink() { ::unlink(path.c_str()); }
  } unlink{tmp};
  Digest diff_id = TRY_CTX(write_tar(upper, fd.get()), "layer of {}", upper.string());
  BlobInfo blob = TRY(blobs.put_file(tmp, std::nullopt));
  return LayerBlob{blob, diff_id};
}

}  // namespace vireo::image::build
