// Escape classes: fds leaking into the container (and a cwd reaching the host through one), the
// /proc/self/exe overwrite of the runtime binary (CVE-2019-5736), and mount targets that point
// out of the rootfs through symlinks.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/file.h"
#include "base/ids.h"
#include "runtime_fixture.h"

namespace vireo::container::testing {
namespace {

namespace fs = std::filesystem;

// A host directory fd the runtime inherits (no O_CLOEXEC), as an engine might leak one.
class LeakedFd {
 public:
  explicit LeakedFd(const fs::path& dir) : fd_(::open(dir.c_str(), O_RDONLY | O_DIRECTORY)) {}
  ~LeakedFd() { ::close(fd_); }
  int get() const { return fd_; }

 private:
  int fd_;
};

TEST_F(RuntimeTest, NoFileDescriptorLeaksIntoTheContainer) {
  LeakedFd leak(root_);
  ASSERT_GE(leak.get(), 3);
  // ls itself holds one fd on the directory it lists: 0, 1, 2 and that one.
  Output o = run(config({"/bin/sh", "-c", "ls /proc/self/fd | wc -l"}));
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "4\n");
}

TEST_F(RuntimeTest, CwdThroughALeakedFdIsRefused) {
  LeakedFd leak(root_);
  for (int fd = 3; fd < 12; ++fd) {
    Json c = config({"/bin/sh", "-c", "pwd; ls"});
    c["process"]["cwd"] = fmt::format("/proc/self/fd/{}", fd);
    Output o = run(c);
    EXPECT_NE(o.exit_code, 0) << "cwd " << fd << " was accepted: " << o.out;
    EXPECT_EQ(o.out.find("bundle"), std::string::npos) << o.out;
  }
}

TEST_F(RuntimeTest, MountTargetSymlinkCannotLeaveTheRootfs) {
  // A writable rootfs whose /evil points at a host directory: the tmpfs must land inside.
  fs::path rootfs = root_ / "evil-rootfs";
  fs::path victim = root_ / "victim";
  fs::create_directories(victim);
  fs::create_directories(rootfs / "bin");
  fs::copy_file("/bin/busybox", rootfs / "bin/busybox");
  fs::create_symlink("busybox", rootfs / "bin/sh");
  fs::create_symlink("busybox", rootfs / "bin/ls");
  for (const char* d : {"proc", "sys", "dev"}) fs::create_directories(rootfs / d);
  fs::create_symlink(victim, rootfs / "evil");
  Json c = config({"/bin/sh", "-c", "ls /evil"});
  c["root"]["path"] = rootfs.string();
  c["mounts"].push_back({{"destination", "/evil"}, {"type", "tmpfs"}, {"source", "tmpfs"}});
  Output o = run(c);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  // The host directory did not get the mount (it would show up in our mountinfo otherwise).
  EXPECT_EQ(read_file("/proc/self/mountinfo")->find(victim.string()), std::string::npos);
  EXPECT_TRUE(fs::is_symlink(rootfs / "evil"));
}

std::string file_digest(const std::string& path) {
  return sha256_hex(*read_file(path));
}

TEST_F(RuntimeTest, RuntimeBinaryCannotBeOverwrittenThroughProcSelfExe) {
  std::string before = file_digest(runtime_bin_);
  // Container A: its init runs the runtime's code, blocked until start.
  std::string a = new_id();
  fs::path pid_file = root_ / "a.pid";
  ASSERT_EQ(runtime({"create", "--bundle", bundle(config({"/bin/sleep", "30"}), a).string(),
                     "--pid-file", pid_file.string(), a})
                .exit_code,
            0);
  int pid = 0;
  std::ifstream(pid_file) >> pid;
  ASSERT_GT(pid, 0);
  std::string exe = fmt::format("/proc/{}/exe", pid);

  // From the host, as root: the init's executable is not the binary on disk...
  struct stat init_exe, on_disk;
  ASSERT_EQ(::stat(exe.c_str(), &init_exe), 0);
  ASSERT_EQ(::stat(runtime_bin_.c_str(), &on_disk), 0);
  EXPECT_FALSE(init_exe.st_dev == on_disk.st_dev && init_exe.st_ino == on_disk.st_ino);
  // ... and it cannot be opened for writing.
  int fd = ::open(exe.c_str(), O_WRONLY | O_APPEND);
  EXPECT_LT(fd, 0) << "the init's executable is writable";
  if (fd >= 0) ::close(fd);

  // From inside: container B joins A's pid namespace as full root and tries the same on pid 1.
  Json c = config({"/bin/sh", "-c", ": >> /proc/1/exe && echo WRITABLE; readlink /proc/1/exe"});
  c["process"].erase("capabilities");
  c["process"]["noNewPrivileges"] = false;
  c["linux"].erase("seccomp");
  for (auto& ns : c["linux"]["namespaces"])
    if (ns["type"] == "pid") ns["path"] = fmt::format("/proc/{}/ns/pid", pid);
  Output o = run(c);
  EXPECT_EQ(o.out.find("WRITABLE"), std::string::npos) << o.out;
  EXPECT_NE(o.err.find("Read-only file system"), std::string::npos) << o.err;
  EXPECT_EQ(file_digest(runtime_bin_), before);
}

}  // namespace
}  // namespace vireo::container::testing
