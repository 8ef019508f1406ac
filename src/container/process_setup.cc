#include "container/process_setup.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>

#include "base/fd.h"
#include "base/strings.h"
#include "container/linux_sys.h"

namespace vireo::container {

namespace {

struct CapSets {
  uint64_t effective = 0, permitted = 0, inheritable = 0;
};

uint64_t mask_of(const std::vector<int>& caps) {
  uint64_t m = 0;
  for (int c : caps) m |= uint64_t{1} << c;
  return m;
}

Result<void> capset(const CapSets& s) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  for (int i = 0; i < 2; ++i) {
    data[i].effective = static_cast<uint32_t>(s.effective >> (32 * i));
    data[i].permitted = static_cast<uint32_t>(s.permitted >> (32 * i));
    data[i].inheritable = static_cast<uint32_t>(s.inheritable >> (32 * i));
  }
  if (::syscall(SYS_capset, &header, data) != 0) return errno_error("capset");
  return {};
}

int last_cap() {
  static int last = [] {
    int v = 40;
    if (FILE* f = ::fopen("/proc/sys/kernel/cap_last_cap", "re")) {
      if (::fscanf(f, "%d", &v) != 1) v = 40;
      ::fclose(f);
    }
    return v;
  }();
  return last;
}

Result<void> drop_bounding(uint64_t keep) {
  for (int c = 0; c <= last_cap(); ++c) {
    if (keep & (uint64_t{1} << c)) continue;
    if (::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL)
      return errno_error(fmt::format("drop {} from the bounding set", capability_name(c)));
  }
  return {};
}

}  // namespace

Result<void> set_rlimits(const Process& p) {
  for (const auto& r : p.rlimits) {
    rlimit lim{r.soft, r.hard};
    if (::setrlimit(r.resource, &lim) != 0) return errno_error(fmt::format("set {}", r.name));
  }
  return {};
}

Result<void> set_oom_score_adj(const Process& p) {
  if (!p.oom_score_adj) return {};
  Fd fd(::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC));
  if (!fd) return errno_error("open /proc/self/oom_score_adj");
  return with_context(sys::write_all(fd.get(), std::to_string(*p.oom_score_adj)),
                      "process.oomScoreAdj");
}

Result<void> setup_console(const Process& p, int console_fd) {
  Fd master(::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!master) return errno_error("open /dev/ptmx");
  if (::unlockpt(master.get()) != 0) return errno_error("unlockpt");
  int ptn = 0;
  if (::ioctl(master.get(), TIOCGPTN, &ptn) != 0) return errno_error("TIOCGPTN");
  // TIOCGPTPEER opens the slave through the master, so no path lookup can be redirected.
  Fd slave(::ioctl(master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!slave) return errno_error("open pty slave");
  if (p.console_width && p.console_height) {
    winsize ws{p.console_height, p.console_width, 0, 0};
    ::ioctl(slave.get(), TIOCSWINSZ, &ws);
  }
  TRY_CTX(sys::send_fd(console_fd, master.get()), "console socket");
  if (::setsid() < 0) return errno_error("setsid");
  if (::ioctl(slave.get(), TIOCSCTTY, 0) != 0) return errno_error("set controlling terminal");
  for (int fd = 0; fd < 3; ++fd)
    if (::dup3(slave.get(), fd, 0) < 0) return errno_error("dup pty slave");
  return {};
}

Result<void> switch_user(const Process& p) {
  const User& u = p.user;
  CapSets sets;
  uint64_t bounding = ~uint64_t{0}, ambient = 0;
  if (p.capabilities) {
    bounding = mask_of(p.capabilities->bounding);
    sets.effective = mask_of(p.capabilities->effective);
    sets.permitted = mask_of(p.capabilities->permitted);
    sets.inheritable = mask_of(p.capabilities->inheritable);
    ambient = mask_of(p.capabilities->ambient);
  }
  TRY(drop_bounding(bounding));
  // A rootless user namespace denies setgroups; with no extra groups there is nothing to set.
  if (::setgroups(u.additional_gids.size(), u.additional_gids.data()) != 0 &&
      !(errno == EPERM && u.additional_gids.empty()))
    return errno_error("setgroups");
  if (::setresgid(u.gid, u.gid, u.gid) != 0) return errno_error(fmt::format("setgid {}", u.gid));
  // Keep the permitted set across the uid change; the wanted sets are installed right after.
  if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return errno_error("PR_SET_KEEPCAPS");
  if (::setresuid(u.uid, u.uid, u.uid) != 0) return errno_error(fmt::format("setuid {}", u.uid));
  ::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
  // The uid change made us non-dumpable, which hides /proc/self/fd (needed for the exec fifo)
  // from the new uid. exec resets it anyway; our executable is sealed (sealed_exe.h).
  ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
  if (u.umask) ::umask(*u.umask);
  if (!p.capabilities && u.uid == 0) return {};
  TRY(capset(sets));
  for (int c = 0; c <= last_cap() && c < 64; ++c) {
    if (!(ambient & (uint64_t{1} << c))) continue;
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) != 0)
      return errno_error(fmt::format("raise ambient {}", capability_name(c)));
  }
  return {};
}

Result<std::string> find_executable(const Process& p) {
  const std::string& name = p.args[0];
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) != 0) return errno_error(fmt::format("exec {}", name));
    return name;
  }
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const auto& e : p.env)
    if (e.starts_with("PATH=")) path = e.substr(5);
  for (const auto& dir : split(path, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  return make_error(ErrorCode::kNotFound, "exec \"{}\": executable file not found in $PATH", name);
}

Result<void> enter_cwd(const Process& p) {
  if (::chdir(p.cwd.c_str()) != 0) return errno_error(fmt::format("process.cwd {}", p.cwd));
  char buf[4096];
  // getcwd() reports a directory outside the process's root as "(unreachable)/...".
  if (!::getcwd(buf, sizeof buf) || buf[0] != '/')
    return make_error(ErrorCode::kPermissionDenied,
                      "process.cwd {}: resolves outside the container's root", p.cwd);
  return {};
}

}  // namespace vireo::container
