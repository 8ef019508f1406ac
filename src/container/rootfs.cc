#include "container/rootfs.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "base/strings.h"
#include "container/linux_sys.h"
#include "container/mount_options.h"

namespace vireo::container {

namespace {

namespace fs = std::filesystem;

// Flags the kernel locks on a mount seen from a user namespace; a remount must keep them.
unsigned long locked_flags(const std::string& path) {
  struct statvfs st;
  if (::statvfs(path.c_str(), &st) != 0) return 0;
  unsigned long flags = 0;
  if (st.f_flag & ST_NOSUID) flags |= MS_NOSUID;
  if (st.f_flag & ST_NODEV) flags |= MS_NODEV;
  if (st.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
  if (st.f_flag & ST_NOATIME) flags |= MS_NOATIME;
  if (st.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
  if (st.f_flag & ST_RELATIME) flags |= MS_RELATIME;
  return flags;
}

Result<void> remount_bind(const std::string& path, unsigned long flags) {
  return sys::mount("", path, "", MS_BIND | MS_REMOUNT | flags | locked_flags(path), "");
}

Result<void> apply_after_mount(int root_fd, const Mount& m, const MountOptions& o) {
  if (o.propagation.empty() && o.attr_set == 0 && o.attr_clr == 0 &&
      !(o.bind() && remount_flags(o.flags)))
    return {};
  // Reopen: the fd used for mounting still points at the directory underneath the new mount.
  Fd target = TRY(sys::open_in_root(root_fd, m.destination, O_PATH));
  std::string path = sys::fd_path(target.get());
  if (o.bind() && remount_flags(o.flags))
    TRY_CTX(remount_bind(path, remount_flags(o.flags)), "mount {}", m.destination);
  for (unsigned long p : o.propagation)
    TRY_CTX(sys::mount("", path, "", p, ""), "mount {}", m.destination);
  if (o.attr_set || o.attr_clr) {
    mount_attr attr{};
    attr.attr_set = o.attr_set;
    attr.attr_clr = o.attr_clr;
    if (::mount_setattr(target.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
      return errno_error(fmt::format("mount {}: set recursive attributes", m.destination));
  }
  return {};
}

// /sys/fs/cgroup inside the container: cgroup2 itself under a cgroup namespace, else bind
// mounts of the container's own cgroup directories (a tmpfs with one per v1 hierarchy).
Result<void> mount_cgroup(int root_fd, const Mount& m, const MountOptions& o,
                          const RootfsOptions& ro) {
  Fd target = TRY(sys::make_dirs_in_root(root_fd, m.destination, 0755));
  unsigned long flags = o.flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME);
  if (!ro.cgroup) return {};
  if (ro.cgroup->mode() == CgroupMode::kUnified) {
    if (ro.cgroup_ns)
      return sys::mount_at("cgroup2", target.get(), "cgroup2", o.flags, "", m.destination);
    TRY(sys::mount_at(ro.cgroup->unified_path(), target.get(), "", MS_BIND | MS_REC, "",
                      m.destination));
    return apply_after_mount(root_fd, m, o);
  }
  TRY(sys::mount_at("tmpfs", target.get(), "tmpfs", flags, "mode=755", m.destination));
  for (const auto& [dir, names] : ro.cgroup->legacy_dirs()) {
    std::string dest = m.destination + "/" + names;
    Fd sub = TRY(sys::make_dirs_in_root(root_fd, dest, 0755));
    TRY(sys::mount_at(dir, sub.get(), "", MS_BIND, "", dest));
    Fd mounted = TRY(sys::open_in_root(root_fd, dest, O_PATH));
    TRY(remount_bind(sys::fd_path(mounted.get()), flags | (o.flags & MS_RDONLY)));
  }
  if (o.flags & MS_RDONLY) {
    Fd top = TRY(sys::open_in_root(root_fd, m.destination, O_PATH));
    TRY(sys::mount("", sys::fd_path(top.get()), "", MS_REMOUNT | MS_RDONLY | flags, "mode=755"));
  }
  return {};
}

Result<void> mount_one(int root_fd, const Mount& m, const RootfsOptions& ro) {
  MountOptions o = TRY_CTX(parse_mount_options(m.options), "mount {}", m.destination);
  if (m.type == "cgroup" || m.type == "cgroup2") return mount_cgroup(root_fd, m, o, ro);
  Fd target;
  if (o.bind()) {
    struct stat st;
    if (::stat(m.source.c_str(), &st) != 0)
      return errno_error(fmt::format("mount {}: source {}", m.destination, m.source));
    if (S_ISDIR(st.st_mode)) {
      target = TRY(sys::make_dirs_in_root(root_fd, m.destination, 0755));
    } else {
      TRY(sys::make_file_in_root(root_fd, m.destination));
      target = TRY(sys::open_in_root(root_fd, m.destination, O_PATH));
    }
    TRY(sys::mount_at(m.source, target.get(), "", o.flags & (MS_BIND | MS_REC), "", m.destination));
  } else {
    target = TRY(sys::make_dirs_in_root(root_fd, m.destination, 0755));
    TRY(sys::mount_at(m.source, target.get(), m.type, o.flags, o.data, m.destination));
  }
  return apply_after_mount(root_fd, m, o);
}

bool has_mount_at(const Config& c, std::string_view dest) {
  return std::any_of(c.mounts.begin(), c.mounts.end(),
                     [&](const Mount& m) { return m.destination == dest; });
}

Result<void> create_device(int root_fd, const Device& d, bool user_ns) {
  fs::path path(d.path);
  if (user_ns) {
    // mknod is not allowed in a user namespace: bind the host's node instead.
    TRY(sys::make_file_in_root(root_fd, d.path));
    Fd target = TRY(sys::open_in_root(root_fd, d.path, O_PATH));
    return sys::mount_at(d.path, target.get(), "", MS_BIND, "", d.path);
  }
  Fd parent = TRY(sys::make_dirs_in_root(root_fd, path.parent_path().string(), 0755));
  mode_t type = d.type == 'b' ? S_IFBLK : d.type == 'p' ? S_IFIFO : S_IFCHR;
  mode_t mode = d.file_mode.value_or(0666) & 07777;
  dev_t dev = makedev(static_cast<unsigned>(d.major), static_cast<unsigned>(d.minor));
  const char* name = path.filename().c_str();
  if (::mknodat(parent.get(), name, type | mode, dev) != 0) {
    if (errno != EEXIST) return errno_error(fmt::format("mknod {}", d.path));
    ::unlinkat(parent.get(), name, 0);
    if (::mknodat(parent.get(), name, type | mode, dev) != 0)
      return errno_error(fmt::format("mknod {}", d.path));
  }
  // mknod applies the umask; the config's mode is what the container must see.
  if (::fchmodat(parent.get(), name, mode, 0) != 0)
    return errno_error(fmt::format("chmod {}", d.path));
  if ((d.uid || d.gid) && ::fchownat(parent.get(), name, d.uid.value_or(0), d.gid.value_or(0),
                                     AT_SYMLINK_NOFOLLOW) != 0)
    return errno_error(fmt::format("chown {}", d.path));
  return {};
}

Result<void> create_devices(int root_fd, const Config& c, bool user_ns) {
  static const Device kDefaults[] = {
      {"/dev/null", 'c', 1, 3, 0666, 0, 0},    {"/dev/zero", 'c', 1, 5, 0666, 0, 0},
      {"/dev/full", 'c', 1, 7, 0666, 0, 0},    {"/dev/random", 'c', 1, 8, 0666, 0, 0},
      {"/dev/urandom", 'c', 1, 9, 0666, 0, 0}, {"/dev/tty", 'c', 5, 0, 0666, 0, 0},
  };
  for (const auto& d : kDefaults) {
    bool overridden = std::any_of(c.linux.devices.begin(), c.linux.devices.end(),
                                  [&](const Device& x) { return x.path == d.path; });
    if (!overridden) TRY(create_device(root_fd, d, user_ns));
  }
  for (const auto& d : c.linux.devices) TRY(create_device(root_fd, d, user_ns));
  Fd dev = TRY(sys::make_dirs_in_root(root_fd, "/dev", 0755));
  struct Link {
    const char* target;
    const char* name;
  };
  static const Link kLinks[] = {{"/proc/self/fd", "fd"},
                                {"/proc/self/fd/0", "stdin"},
                                {"/proc/self/fd/1", "stdout"},
                                {"/proc/self/fd/2", "stderr"}};
  for (const auto& l : kLinks)
    if (::symlinkat(l.target, dev.get(), l.name) != 0 && errno != EEXIST)
      return errno_error(fmt::format("symlink /dev/{}", l.name));
  if (has_mount_at(c, "/dev/pts")) {
    // The devpts instance's own ptmx, so ptys opened in the container live in its devpts.
    ::unlinkat(dev.get(), "ptmx", 0);
    if (::symlinkat("pts/ptmx", dev.get(), "ptmx") != 0) return errno_error("symlink /dev/ptmx");
  }
  return {};
}

unsigned long propagation_flag(const std::string& name) {
  if (name == "shared") return MS_SHARED;
  if (name == "rshared") return MS_SHARED | MS_REC;
  if (name == "slave") return MS_SLAVE;
  if (name == "rslave") return MS_SLAVE | MS_REC;
  if (name == "private") return MS_PRIVATE;
  if (name == "rprivate") return MS_PRIVATE | MS_REC;
  if (name == "unbindable") return MS_UNBINDABLE;
  if (name == "runbindable") return MS_UNBINDABLE | MS_REC;
  return 0;
}

}  // namespace

Result<void> prepare_rootfs(const Config& c, const RootfsOptions& o) {
  // Nothing mounted in the container may propagate back to the host. Shared variants are
  // applied to the new root after pivot_root.
  unsigned long root_prop = propagation_flag(c.linux.rootfs_propagation);
  if (root_prop == 0 || (root_prop & MS_SHARED)) root_prop = MS_SLAVE | MS_REC;
  TRY(sys::mount("", "/", "", root_prop, ""));
  // pivot_root needs the new root to be a mount point.
  TRY(sys::mount(c.rootfs.string(), c.rootfs.string(), "", MS_BIND | MS_REC, ""));
  Fd root(::open(c.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return errno_error(fmt::format("open rootfs {}", c.rootfs.string()));
  for (const auto& m : c.mounts) TRY(mount_one(root.get(), m, o));
  TRY(create_devices(root.get(), c, o.user_ns));
  return {};
}

Result<void> enter_rootfs(const Config& c, bool no_pivot) {
  if (::chdir(c.rootfs.c_str()) != 0) return errno_error("chdir rootfs");
  if (no_pivot) {
    TRY(sys::mount(c.rootfs.string(), "/", "", MS_MOVE, ""));
    if (::chroot(".") != 0) return errno_error("chroot");
  } else {
    if (::syscall(SYS_pivot_root, ".", ".") != 0) return errno_error("pivot_root");
    // The old root is stacked under "."; make it a slave so detaching it cannot propagate
    // unmounts to the host, then drop it.
    TRY(sys::mount("", ".", "", MS_SLAVE | MS_REC, ""));
    if (::umount2(".", MNT_DETACH) != 0) return errno_error("detach old root");
  }
  if (::chdir("/") != 0) return errno_error("chdir /");
  return {};
}

Result<void> finish_rootfs(const Config& c) {
  if (unsigned long p = propagation_flag(c.linux.rootfs_propagation); p & MS_SHARED)
    TRY(sys::mount("", "/", "", p, ""));
  for (const auto& [key, value] : c.linux.sysctl) {
    if (key.find("..") != std::string::npos || key.find('/') != std::string::npos)
      return make_error(ErrorCode::kInvalidArgument, "linux.sysctl: invalid key \"{}\"", key);
    std::string path = "/proc/sys/" + key;
    std::replace(path.begin() + 10, path.end(), '.', '/');
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return errno_error(fmt::format("linux.sysctl: {}", key));
    TRY_CTX(sys::write_all(fd.get(), value), "linux.sysctl: {}", key);
  }
  // After pivot_root "/" is the container's root, so plain paths cannot leave it.
  for (const auto& path : c.linux.masked_paths) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode))
      TRY(sys::mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0k"));
    else
      TRY(sys::mount("/dev/null", path, "", MS_BIND, ""));
  }
  for (const auto& path : c.linux.readonly_paths) {
    if (::access(path.c_str(), F_OK) != 0) continue;
    TRY(sys::mount(path, path, "", MS_BIND | MS_REC, ""));
    TRY(remount_bind(path, MS_RDONLY));
  }
  if (c.root_readonly) TRY_CTX(remount_bind("/", MS_RDONLY), "root.readonly");
  return {};
}

}  // namespace vireo::container
