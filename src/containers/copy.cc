// `vireo ct cp`: files between a container's root file system and the host. Paths in the
// container are resolved inside its root (openat2 RESOLVE_IN_ROOT: the container's symlinks
// are followed as the container sees them and never lead out of it). Out of the container, cp
// copies from the resolved fd without following links below it; into the container, the host
// tree is packed with tar and unpacked by the image store's secure extraction, which replaces
// files but never writes through a symlink the container planted.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/fd.h"
#include "base/file.h"
#include "base/ids.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "containers/engine_impl.h"
#include "image/layer_unpack.h"

namespace vireo::containers {

namespace fs = std::filesystem;

namespace {

constexpr auto kCopyTimeout = std::chrono::hours(1);

// path (absolute, as the container sees it) under root_fd, symlinks resolved inside the root.
Result<Fd> open_in_container(int root_fd, const std::string& path, int flags) {
  if (!path.starts_with('/'))
    return make_error(ErrorCode::kInvalidArgument, "container path '{}' must be absolute", path);
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  std::string rel = "." + path;
  long fd = ::syscall(SYS_openat2, root_fd, rel.c_str(), &how, sizeof how);
  if (fd < 0) {
    if (errno == ENOENT)
      return make_error(ErrorCode::kNotFound, "{}: no such file or directory in the container",
                        path);
    return errno_error(path);
  }
  return Fd(static_cast<int>(fd));
}

Result<void> run_tool(const std::vector<std::string>& argv, const std::string& what) {
  auto r = TRY(run_process(argv, {.timeout = kCopyTimeout}));
  if (!r.ok()) return make_error(ErrorCode::kIo, "{}: {}", what, std::string(trim(r.err)));
  return {};
}

std::string base_name(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

}  // namespace

Result<Fd> Engine::Impl::open_rootfs(const std::string& name, Container& c) {
  auto r = TRY(find(name));
  std::lock_guard action(r->action);
  TRY(ensure_rootfs(*r));
  {
    std::lock_guard lock(mu);
    c = r->c;
  }
  fs::path rootfs = r->dir / "bundle" / "rootfs";
  Fd fd(::open(rootfs.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return errno_error("open the root file system of " + c.name);
  return fd;
}

Result<void> Engine::copy_out(const std::string& name, const std::string& container_path,
                              const std::filesystem::path& host_path) {
  Container c;
  Fd root = TRY(impl_->open_rootfs(name, c));
  Fd src = TRY(open_in_container(root.get(), container_path, O_PATH));
  fs::path dest = host_path;
  std::error_code ec;
  if (fs::is_directory(host_path, ec)) {
    std::string leaf = base_name(container_path);
    dest = host_path / (leaf.empty() ? "rootfs" : leaf);
  } else if (!fs::is_directory(host_path.parent_path().empty() ? "." : host_path.parent_path())) {
    return make_error(ErrorCode::kNotFound, "{}: its directory does not exist on the host",
                      host_path.string());
  }
  // -H follows only the fd's magic link; -a copies what is below it as it is (links as links).
  std::string from = fmt::format("/proc/{}/fd/{}", ::getpid(), src.get());
  return run_tool({"cp", "-a", "-H", "-T", "--", from, dest.string()},
                  fmt::format("copy {}:{} to {}", c.name, container_path, dest.string()));
}

Result<void> Engine::copy_in(const std::string& name, const std::filesystem::path& host_path,
                             const std::string& container_path) {
  struct stat st {};
  if (::lstat(host_path.c_str(), &st) != 0) return errno_error(host_path.string());
  Container c;
  Fd root = TRY(impl_->open_rootfs(name, c));
  // Into container_path when it is a directory; else as container_path in its parent.
  std::string dir_path = container_path, leaf = base_name(host_path.string());
  bool into_dir = false;
  if (auto target = open_in_container(root.get(), container_path, O_PATH); target) {
    struct stat ts {};
    into_dir = ::fstat(target->get(), &ts) == 0 && S_ISDIR(ts.st_mode);
  } else if (target.error().code() != ErrorCode::kNotFound) {
    return std::unexpected(target.error());
  }
  if (!into_dir) {
    dir_path = fs::path(container_path).lexically_normal().parent_path().string();
    leaf = base_name(container_path);
  }
  Fd dest =
      TRY(open_in_container(root.get(), dir_path.empty() ? "/" : dir_path, O_RDONLY | O_DIRECTORY));
  if (leaf.empty() || leaf == "." || leaf == "..")
    return make_error(ErrorCode::kInvalidArgument, "cannot copy to '{}'", container_path);
  // Staged under the new name (a hard link or reflink-free copy of a tree), then packed.
  fs::path scratch = impl_->o.state_dir / ("cp-" + random_hex(8));
  TRY(make_dirs(scratch / "stage", 0700));
  auto cleanup = [&] {
    std::error_code ec;
    fs::remove_all(scratch, ec);
  };
  auto done = [&]() -> Result<void> {
    TRY(run_tool({"cp", "-a", "-T", "--", host_path.string(), (scratch / "stage" / leaf).string()},
                 "stage " + host_path.string()));
    TRY(run_tool({"tar", "-C", (scratch / "stage").string(), "-cf", (scratch / "in.tar").string(),
                  "--", leaf},
                 "pack " + host_path.string()));
    image::UnpackOptions o{.mode = image::UnpackMode::kArchive};
    TRY_CTX(image::unpack_tar_file(scratch / "in.tar", dest.get(), o), "copy into {}:{}", c.name,
            container_path);
    return {};
  }();
  cleanup();
  return done;
}

}  // namespace vireo::containers
