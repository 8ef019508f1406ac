#include "sandbox/view.h"

#include <dirent.h>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <filesystem>

#include "base/fd.h"
#include "base/file.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "container/linux_sys.h"

namespace vireo::sandbox {

namespace csys = container::sys;

namespace {

bool is_dir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string work_dir(const ViewPlan& plan, const std::string& what) {
  std::string name = what;
  for (char& c : name)
    if (c == '/') c = '_';
  return plan.app.work + "/" + name;
}

Result<void> do_mount(const std::string& source, const std::string& target, const std::string& type,
                      unsigned long flags, const std::string& data = {}) {
  return csys::mount(source, target, type, flags, data);
}

Result<void> set_read_only(const std::string& target, bool recursive, uint64_t extra = 0) {
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | extra;
  if (::mount_setattr(AT_FDCWD, target.c_str(), recursive ? AT_RECURSIVE : 0, &attr, sizeof attr) !=
      0)
    return errno_error("make " + target + " read-only");
  return {};
}

// The lowerdir option: the extra trees that hold this path, then the host path itself.
std::string lower_layers(const ViewPlan& plan, const std::string& path) {
  std::string lower;
  for (const auto& tree : plan.extra_lower)
    if (is_dir(tree + path)) lower += tree + path + ":";
  return lower + path;
}

std::vector<std::string> entries_of(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
  }
  return names;
}

// Copies a store or package tree for use as an overlay layer: never following a link, keeping
// whiteouts (0/0 devices), opaque marks, modes and owners.
Result<void> copy_layer(const std::string& from, const std::string& to) {
  struct stat st;
  if (::lstat(from.c_str(), &st) != 0) return errno_error("stat " + from);
  if (S_ISDIR(st.st_mode)) {
    if (::mkdir(to.c_str(), st.st_mode & 07777) != 0 && errno != EEXIST)
      return errno_error("mkdir " + to);
    for (const char* xattr : {"user.overlay.opaque", "trusted.overlay.opaque"}) {
      char v = 0;
      if (::lgetxattr(from.c_str(), xattr, &v, 1) == 1) ::lsetxattr(to.c_str(), xattr, &v, 1, 0);
    }
    for (const auto& name : entries_of(from)) TRY(copy_layer(from + "/" + name, to + "/" + name));
  } else if (S_ISLNK(st.st_mode)) {
    std::string target(st.st_size + 1, '\0');
    ssize_t n = ::readlink(from.c_str(), target.data(), target.size());
    if (n < 0) return errno_error("readlink " + from);
    target.resize(n);
    if (::symlink(target.c_str(), to.c_str()) != 0) return errno_error("symlink " + to);
  } else if (S_ISREG(st.st_mode)) {
    std::error_code ec;
    std::filesystem::copy_file(from, to, ec);
    if (ec) return make_error(ErrorCode::kIo, "copy {}: {}", from, ec.message());
  } else if (S_ISCHR(st.st_mode) && st.st_rdev == 0) {
    if (::mknod(to.c_str(), S_IFCHR | 0600, 0) != 0) return errno_error("whiteout " + to);
  } else {
    return {};  // sockets, fifos and devices have no place in a layer
  }
  ::lchown(to.c_str(), st.st_uid, st.st_gid);
  if (!S_ISLNK(st.st_mode)) ::chmod(to.c_str(), st.st_mode & 07777);
  return {};
}

// overlayfs refuses a lower layer that lies inside another one, and every store or package sits
// inside the host's "/": the extra layers are copied into a tmpfs of their own first.
Result<std::vector<std::string>> stage_extra_layers(const ViewPlan& plan) {
  std::vector<std::string> staged;
  if (plan.extra_lower.empty()) return staged;
  std::string base = plan.app.work + "/extra";
  TRY(do_mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"));
  for (size_t i = 0; i < plan.extra_lower.size(); ++i) {
    staged.push_back(fmt::format("{}/{}", base, i));
    TRY_CTX(copy_layer(plan.extra_lower[i], staged.back()), "stage layer {}", plan.extra_lower[i]);
  }
  return staged;
}

bool on_root_filesystem(const std::string& path) {
  struct stat st, root;
  return ::stat(path.c_str(), &st) == 0 && ::stat("/", &root) == 0 && st.st_dev == root.st_dev;
}

// Redirected paths on the root filesystem share one overlay of "/" (its layers never cross into
// other mounts), bound into the view path by path: one overlay mount instead of five, which is
// most of the sandbox's start-up. A path that is a mount of its own gets its own overlay.
Result<void> mount_kernel_overlays(const ViewPlan& original) {
  ViewPlan plan = original;
  plan.extra_lower = TRY(stage_extra_layers(original));
  bool shared_mounted = false;
  for (const auto& path : plan.redirected) {
    if (!on_root_filesystem(path)) {
      std::string options =
          fmt::format("lowerdir={},upperdir={},workdir={},userxattr,volatile",
                      lower_layers(plan, path), plan.app.store + path, work_dir(plan, path));
      TRY_CTX(do_mount("overlay", plan.app.root + path, "overlay", MS_NOSUID | MS_NODEV, options),
              "redirect {}", path);
      continue;
    }
    if (!shared_mounted) {
      std::string lower;
      for (const auto& tree : plan.extra_lower) lower += tree + ":";
      std::string options = fmt::format("lowerdir={}/,upperdir={},workdir={},userxattr,volatile",
                                        lower, plan.app.store, work_dir(plan, "root"));
      TRY_CTX(do_mount("overlay", plan.app.merged, "overlay", MS_NOSUID | MS_NODEV, options),
              "redirect the system paths");
      shared_mounted = true;
    }
    TRY_CTX(do_mount(plan.app.merged + path, plan.app.root + path, "", MS_BIND), "redirect {}",
            path);
  }
  return {};
}

// One fuse-overlayfs over a staging tree that holds the redirected paths, then each path bound
// into the view. squash_to_root shows every file as owned by the namespace's root, which is the
// user (and the user again in the app's own namespace), so the app may write over
// root's files (the copy lands in the store) while reading still needs the user's own rights.
// The staging tree lives inside the view (under the hidden apps folder), read-only: the host's
// old root is detached after pivot_root, which would cut the daemon off from the bound paths.
Result<void> mount_fuse_overlay(const ViewPlan& plan) {
  std::string staging = plan.app.root + plan.app.lower;
  TRY(do_mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"));
  for (const auto& path : plan.redirected) {
    TRY(make_dirs(staging + path));
    TRY(do_mount(path, staging + path, "", MS_BIND | MS_REC));
  }
  TRY(set_read_only(staging, true));
  std::string lower;
  for (const auto& tree : plan.extra_lower) lower += tree + ":";
  lower += staging;
  std::string fuse = find_program("fuse-overlayfs");
  if (fuse.empty())
    return make_error(ErrorCode::kUnavailable,
                      "fuse-overlayfs is not installed; it is needed to redirect writes as an "
                      "unprivileged user (apt-get install fuse-overlayfs)");
  auto r = run_process(
      {fuse, "-o",
       fmt::format("lowerdir={},upperdir={},workdir={},squash_to_root,static_nlink,noacl", lower,
                   plan.app.store, work_dir(plan, "fuse")),
       plan.app.merged},
      {.timeout = std::chrono::seconds(20)});
  if (!r) return std::unexpected(r.error());
  if (!r->ok()) return make_error(ErrorCode::kIo, "fuse-overlayfs: {}", std::string(trim(r->err)));
  for (const auto& path : plan.redirected)
    TRY(do_mount(plan.app.merged + path, plan.app.root + path, "", MS_BIND | MS_NOSUID | MS_NODEV));
  return {};
}

// Default profile: the home is shared, except its dot-files (the app's settings), which the
// overlay keeps in the app's store. Strict: a private home that lives in the store.
Result<void> mount_home(const ViewPlan& plan) {
  std::string target = plan.app.root + plan.home;
  // A home under /tmp is inside the private tmpfs by now and needs its folder again.
  if (!is_dir(target)) TRY(make_dirs(target));
  if (plan.profile == Profile::kStrict)
    return do_mount(plan.app.home, target, "", MS_BIND | MS_NOSUID | MS_NODEV);
  TRY_CTX(do_mount("overlay", target, "overlay", MS_NOSUID | MS_NODEV,
                   fmt::format("lowerdir={},upperdir={},workdir={},userxattr,volatile", plan.home,
                               plan.app.home, work_dir(plan, "home"))),
          "virtualize the home folder {}", plan.home);
  for (const auto& name : entries_of(plan.home)) {
    if (name.starts_with(".")) continue;
    TRY(do_mount(plan.home + "/" + name, target + "/" + name, "", MS_BIND | MS_REC));
  }
  return {};
}

// Bind targets are resolved inside the view, so a symlink in the view cannot aim a bind at
// the host.
Result<void> mount_bind(const ViewPlan& plan, const Bind& b, int root_fd) {
  struct stat st;
  if (::stat(b.source.c_str(), &st) != 0) return errno_error("bind source " + b.source);
  auto target = csys::open_in_root(root_fd, b.target, O_PATH | O_CLOEXEC);
  if (!target && S_ISDIR(st.st_mode)) target = csys::make_dirs_in_root(root_fd, b.target, 0755);
  if (!target)
    return make_error(ErrorCode::kInvalidArgument,
                      "bind target {} does not exist in the sandbox and cannot be made there "
                      "(the view is read-only outside redirected paths, /tmp and the home)",
                      b.target);
  std::string at = csys::fd_path(target->get());
  TRY_CTX(do_mount(b.source, at, "", MS_BIND | MS_REC), "bind {}", b.source);
  // The fd still names the folder under the new mount; the mount itself is found anew.
  target = csys::open_in_root(root_fd, b.target, O_PATH | O_CLOEXEC);
  if (!target) return std::unexpected(target.error());
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_NOSUID | (b.read_only ? MOUNT_ATTR_RDONLY : 0);
  if (::mount_setattr(target->get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
    return errno_error("set bind options on " + b.target);
  (void)plan;
  return {};
}

// The apps folder is not the app's business: an empty read-only tmpfs covers it.
Result<void> hide_stores(const ViewPlan& plan, int root_fd) {
  auto target = csys::open_in_root(root_fd, plan.app.base, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (!target) return {};
  return csys::mount_at("tmpfs", target->get(), "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY,
                        "mode=0755,size=4k", "hide the app stores");
}

Result<void> private_tmp(const ViewPlan& plan) {
  TRY(do_mount("tmpfs", plan.app.root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"));
  if (is_dir(plan.app.root + "/dev/shm"))
    TRY(do_mount("tmpfs", plan.app.root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"));
  return {};
}

Result<void> pivot_into(const std::string& root) {
  if (::chdir(root.c_str()) != 0) return errno_error("chdir " + root);
  if (::syscall(SYS_pivot_root, ".", ".") != 0) return errno_error("pivot_root");
  if (::umount2(".", MNT_DETACH) != 0) return errno_error("detach the host root");
  if (::chdir("/") != 0) return errno_error("chdir /");
  return {};
}

}  // namespace

// mkdir -p that costs one call when the folder is there already (every run after the first).
static Result<void> ensure_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST) return {};
  return make_dirs(path);
}

Result<void> prepare_store(const ViewPlan& plan) {
  for (const auto& dir : {plan.app.store, plan.app.home, plan.app.root, plan.app.lower,
                          plan.app.merged, work_dir(plan, "fuse"), work_dir(plan, "home"),
                          work_dir(plan, "root"), plan.app.work + "/extra"})
    TRY(ensure_dir(dir));
  for (const auto& path : plan.redirected) {
    TRY(ensure_dir(plan.app.store + path));
    TRY(ensure_dir(work_dir(plan, path)));
  }
  return {};
}

Result<void> enter_view(const ViewPlan& plan) {
  TRY(do_mount("", "/", "", MS_REC | MS_PRIVATE));
  TRY_CTX(do_mount("/", plan.app.root, "", MS_BIND | MS_REC), "copy the host tree");
  TRY(set_read_only(plan.app.root, true));
  if (plan.kernel_overlay)
    TRY(mount_kernel_overlays(plan));
  else
    TRY(mount_fuse_overlay(plan));
  TRY(private_tmp(plan));
  if (!plan.home.empty() && plan.home != "/" && is_dir(plan.home)) TRY(mount_home(plan));
  Fd root_fd(::open(plan.app.root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return errno_error("open " + plan.app.root);
  for (const auto& b : plan.binds) TRY(mount_bind(plan, b, root_fd.get()));
  TRY(hide_stores(plan, root_fd.get()));
  TRY(pivot_into(plan.app.root));
  TRY_CTX(do_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC),
          "mount /proc for the app's pid namespace");
  return {};
}

}  // namespace vireo::sandbox
