#pragma once
// The build context of `vireo image build` (internal to vireo_image_build): COPY/ADD sources
// resolved beneath the context directory with openat2 (never following a symlink out of it),
// the ignore file, the content hash the layer cache keys on, and fd-relative copies into the
// step's mounted tree.
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/openat2.h>
#include <sys/stat.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"
#include "base/file.h"
#include "base/result.h"
#include "base/strings.h"
#include "image/build/containerfile.h"
#include "image/tree.h"

namespace vireo::image::build {

inline constexpr uint64_t kBeneath = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
inline constexpr uint64_t kInRoot = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;

// openat2 relative to dir_fd with the resolve flags.
[[nodiscard]] Result<Fd> open2(int dir_fd, const std::string& path, int flags, uint64_t resolve);
std::string join_rel(const std::string& a, const std::string& b);
[[nodiscard]] Result<std::vector<std::string>> list_dir(int dir_fd);
// An absolute path in the image as its components.
[[nodiscard]] Result<std::vector<std::string>> image_path_components(const std::string& abs);
std::string join_components(const std::vector<std::string>& c, size_t n);
// The directories comps under root_fd, made (uid:gid, mode) where missing, the last opened.
[[nodiscard]] Result<Fd> ensure_dir(int root_fd, const std::vector<std::string>& comps, uid_t uid,
                                    gid_t gid, mode_t mode = 0755);
bool has_glob(std::string_view s);
bool looks_like_url(std::string_view s);
// A plain, gzip or zstd tar (what the image library's unpack reads).
bool is_tar_archive(int fd);

struct Source {
  std::string written;  // as in the Containerfile
  std::string rel;      // normalized, relative to the context ("" is the context itself)
  Fd fd;                // O_RDONLY, the source itself (a followed symlink's target)
  struct stat st {};
  bool archive = false;  // ADD: a tar to extract
};

class Context {
 public:
  static Result<Context> open(const std::filesystem::path& dir) {
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
      std::string norm = std::filesystem::path(w).lexically_normal().string();
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

  std::filesystem::path path_;
  Fd fd_;
  IgnoreRules ignore_;
};

struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
  std::optional<mode_t> chmod;
};

// A hash of the sources' content, names and modes (the layer cache's key for COPY/ADD).
[[nodiscard]] Result<std::string> content_hash(const Context& ctx, std::vector<Source>& sources);
// Copies (or, for ADD archives, extracts) the sources to dest_abs in the tree under root_fd.
[[nodiscard]] Result<void> copy_sources(const Context& ctx, std::vector<Source>& sources,
                                        int root_fd, const std::string& dest_abs, bool dest_is_dir,
                                        const Owner& o);

}  // namespace vireo::image::build
