#include "daemon/container_volumes.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "base/fd.h"
#include "base/file.h"
#include "base/log.h"
#include "base/rollback.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "daemon/storage.h"

namespace vireo::daemon {

namespace {

namespace fs = std::filesystem;
constexpr auto kToolTimeout = std::chrono::minutes(5);
constexpr auto kFuseTimeout = std::chrono::seconds(10);

bool is_mountpoint(const fs::path& p) {
  struct stat a {
  }, b{};
  if (::stat(p.c_str(), &a) != 0 || ::stat(p.parent_path().c_str(), &b) != 0) return false;
  return a.st_dev != b.st_dev;
}

Result<void> tool(const std::vector<std::string>& argv, const std::string& what) {
  auto r = TRY(run_process(argv, {.timeout = kToolTimeout}));
  if (!r.ok()) return make_error(ErrorCode::kIo, "{}: {}", what, std::string(trim(r.err + r.out)));
  return {};
}

// A volume nobody wrote to yet reads as zeros at its start, where file systems keep their
// superblocks; anything else that blkid does not know is refused rather than formatted.
Result<bool> never_written(const fs::path& file) {
  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error("open " + file.string());
  std::vector<char> head(1 << 20);
  ssize_t n = ::pread(fd.get(), head.data(), head.size(), 0);
  if (n < 0) return errno_error("read " + file.string());
  return std::all_of(head.begin(), head.begin() + n, [](char c) { return c == 0; });
}

Result<std::string> filesystem_type(const fs::path& file) {
  auto r = TRY(run_process({"blkid", "-p", "-o", "value", "-s", "TYPE", file.string()},
                           {.timeout = kToolTimeout}));
  return std::string(trim(r.out));  // blkid exits 2 when it finds nothing
}

}  // namespace

// Where the volume's bytes are a file on the host: a raw volume of a dir pool is its own file;
// any other (thin, qcow2) is made one by nbdfuse over the volume's NBD export, at
// <mount_root>/.nbd/POOL/VOL/disk. nbdfuse runs in its own session, so it outlives vireod.
Result<fs::path> StorageVolumes::volume_file(const std::string& pool, const std::string& name) {
  for (const auto& user : storage_.users_of(pool, name))
    if (user.kind == "VM")
      return make_error(ErrorCode::kConflict,
                        "{}/{} is a disk of VM {}; a container cannot mount it as well", pool, name,
                        user.name);
  Json info = TRY(storage_.show_volume(pool, name));
  if (info.value("read_only", false))
    return make_error(ErrorCode::kInvalidArgument,
                      "{}/{} is a read-only snapshot; clone it (vireo vol clone) and use the clone",
                      pool, name);
  if (info.value("format", "") == "raw" && info.contains("file") && info["file"].is_string())
    return fs::path(info["file"].get<std::string>());
  if (!info.contains("uri") || !info["uri"].is_string())
    return make_error(ErrorCode::kInternal, "vireo-storaged gave no NBD URI for {}/{}", pool, name);
  const fs::path fuse_dir = mount_root_ / ".nbd" / pool / name;
  const fs::path file = fuse_dir / "disk";
  if (is_mountpoint(fuse_dir)) return file;
  if (struct stat st{}; ::stat(fuse_dir.c_str(), &st) != 0 && errno == ENOTCONN)
    (void)tool({"fusermount3", "-u", "-z", fuse_dir.string()}, "drop a dead nbdfuse mount");
  std::string nbdfuse = find_program("nbdfuse");
  if (nbdfuse.empty())
    return make_error(ErrorCode::kUnavailable,
                      "mounting {} volumes needs nbdfuse (package libnbd-bin); install it or use a "
                      "raw volume of a dir pool",
                      info.value("type", "thin"));
  TRY(make_dirs(fuse_dir, 0700));
  const fs::path pidfile = fuse_dir.parent_path() / (name + ".pid");
  ::unlink(pidfile.c_str());
  Fd log(::open((fuse_dir.parent_path() / (name + ".log")).c_str(),
                O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log) return errno_error("open the nbdfuse log");
  pid_t pid = TRY(spawn_detached(
      {nbdfuse, "-P", pidfile.string(), file.string(), info["uri"].get<std::string>()}, log.get()));
  // nbdfuse writes its pidfile once the file is served; that file is its only readiness signal.
  const auto deadline = std::chrono::steady_clock::now() + kFuseTimeout;
  while (::access(pidfile.c_str(), F_OK) != 0) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid)
      return make_error(ErrorCode::kIo, "nbdfuse exited at start; see {}.log",
                        (fuse_dir.parent_path() / name).string());
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return make_error(ErrorCode::kTimeout, "nbdfuse did not serve {}/{} in {} s", pool, name,
                        kFuseTimeout.count());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Reaped here while this vireod runs; it exits when its file system is unmounted.
  std::thread([pid] {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }).detach();
  return file;
}

void StorageVolumes::release_file(const std::string& volume) {
  const fs::path fuse_dir = mount_root_ / ".nbd" / volume;
  if (!is_mountpoint(fuse_dir)) return;
  if (auto r = tool({"fusermount3", "-u", fuse_dir.string()}, "stop nbdfuse for " + volume); !r) {
    spdlog::warn("{}", r.error().message());
    return;
  }
  std::error_code ec;
  fs::remove(fuse_dir, ec);
  fs::remove(fuse_dir.string() + ".pid", ec);
  fs::remove(fuse_dir.string() + ".log", ec);
}

Result<StorageVolumes::Mounted> StorageVolumes::acquire(const std::string& volume) {
  auto slash = volume.find('/');
  if (slash == std::string::npos)
    return make_error(ErrorCode::kInvalidArgument, "expected POOL/VOLUME, got '{}'", volume);
  const std::string pool = volume.substr(0, slash), name = volume.substr(slash + 1);
  std::lock_guard lock(mutex_);
  const fs::path dir = mount_root_ / pool / name;
  if (is_mountpoint(dir)) return Mounted{dir, false};
  const fs::path file = TRY(volume_file(pool, name));
  Rollback undo;
  undo.add([this, volume] { release_file(volume); });
  std::string type = TRY(filesystem_type(file));
  bool fresh = false;
  if (type.empty()) {
    if (!TRY(never_written(file)))
      return make_error(ErrorCode::kInvalidArgument,
                        "it holds data but no file system Vireo can mount (ext4, xfs, btrfs...)");
    TRY(tool({"mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-L",
              name.substr(0, 16), file.string()},
             "make a file system"));
    fresh = true;
  }
  TRY(make_dirs(dir, 0711));
  TRY(tool({"mount", "-o", "loop", file.string(), dir.string()}, "mount it"));
  undo.commit();
  if (fresh) {
    // mkfs leaves lost+found; an empty volume is what a container expects.
    std::error_code ec;
    fs::remove(dir / "lost+found", ec);
  }
  spdlog::info("volume {} mounted on {}{}", volume, dir.string(), fresh ? " (new ext4)" : "");
  return Mounted{dir, fresh};
}

void StorageVolumes::release(const std::string& volume) {
  std::lock_guard lock(mutex_);
  const fs::path dir = mount_root_ / volume;
  if (!is_mountpoint(dir)) return;
  if (auto r = tool({"umount", dir.string()}, "unmount volume " + volume); !r) {
    spdlog::warn("{}", r.error().message());
    return;
  }
  std::error_code ec;
  fs::remove(dir, ec);
  release_file(volume);
}

}  // namespace vireo::daemon
