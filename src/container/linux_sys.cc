#include "container/linux_sys.h"

#include <sys/wait.h>

#include <fcntl.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "base/file.h"
#include "base/strings.h"

namespace vireo::container::sys {

namespace fs = std::filesystem;

Result<Fd> open_in_root(int root_fd, const std::string& path, int flags, mode_t mode) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  for (;;) {
    long fd = ::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how);
    if (fd >= 0) return Fd(static_cast<int>(fd));
    if (errno != EAGAIN && errno != EINTR) return errno_error(fmt::format("open {}", path));
  }
}

namespace {

// mkdir -p inside root. A component that is a symlink is followed the way the kernel would,
// but inside root: its target (absolute = from root) is created instead, up to 8 links deep.
Result<Fd> make_dirs_in_root_at(int root_fd, const std::string& path, mode_t mode, int depth) {
  auto fd = open_in_root(root_fd, path, O_PATH | O_DIRECTORY);
  if (fd || fd.error().sys_errno() != ENOENT) return fd;
  if (depth > 8) return make_error(ErrorCode::kInvalidArgument, "{}: too many symlinks", path);
  Fd dir = TRY(open_in_root(root_fd, "/", O_PATH | O_DIRECTORY));
  auto parts = split(path, '/');
  std::string so_far;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    if (part.empty() || part == ".") continue;
    std::string parent = so_far.empty() ? "/" : so_far;
    so_far += "/" + part;
    if (::mkdirat(dir.get(), part.c_str(), mode) != 0 && errno != EEXIST)
      return errno_error(fmt::format("mkdir {}", so_far));
    // Reopen through the root so that a symlink planted at this component resolves inside it.
    auto next = open_in_root(root_fd, so_far, O_PATH | O_DIRECTORY);
    if (!next && next.error().sys_errno() == ENOENT) {
      char link[4096];
      ssize_t n = ::readlinkat(dir.get(), part.c_str(), link, sizeof link - 1);
      if (n <= 0) return std::unexpected(std::move(next.error()));
      std::string target(link, static_cast<size_t>(n));
      std::string rest;
      for (size_t j = i + 1; j < parts.size(); ++j) rest += "/" + parts[j];
      std::string resolved = target.starts_with('/') ? target : parent + "/" + target;
      return make_dirs_in_root_at(root_fd, resolved + rest, mode, depth + 1);
    }
    if (!next) return std::unexpected(std::move(next.error()));
    dir = std::move(*next);
  }
  return dir;
}

}  // namespace

Result<Fd> make_dirs_in_root(int root_fd, const std::string& path, mode_t mode) {
  return make_dirs_in_root_at(root_fd, path, mode, 0);
}

Result<void> make_file_in_root(int root_fd, const std::string& path) {
  if (open_in_root(root_fd, path, O_PATH)) return {};
  fs::path p(path);
  Fd parent = TRY(make_dirs_in_root(root_fd, p.parent_path().string(), 0755));
  int fd = ::openat(parent.get(), p.filename().c_str(),
                    O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0 && errno != EEXIST) return errno_error(fmt::format("create {}", path));
  if (fd >= 0) ::close(fd);
  return {};
}

std::string fd_path(int fd) {
  return fmt::format("/proc/self/fd/{}", fd);
}

Result<void> mount(const std::string& source, const std::string& target, const std::string& type,
                   unsigned long flags, const std::string& data) {
  if (::mount(source.empty() ? nullptr : source.c_str(), target.c_str(),
              type.empty() ? nullptr : type.c_str(), flags,
              data.empty() ? nullptr : data.c_str()) != 0)
    return errno_error(fmt::format("mount {} on {}", source.empty() ? type : source, target));
  return {};
}

Result<void> mount_at(const std::string& source, int target_fd, const std::string& type,
                      unsigned long flags, const std::string& data, const std::string& what) {
  if (::mount(source.empty() ? nullptr : source.c_str(), fd_path(target_fd).c_str(),
              type.empty() ? nullptr : type.c_str(), flags,
              data.empty() ? nullptr : data.c_str()) != 0)
    return errno_error(fmt::format("mount {} on {}", source.empty() ? type : source, what));
  return {};
}

Result<pid_t> clone3(uint64_t flags, int* pidfd, int cgroup_fd) {
  clone_args args{};
  args.flags = flags | (pidfd ? CLONE_PIDFD : 0) | (cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0);
  args.pidfd = reinterpret_cast<uint64_t>(pidfd);
  args.exit_signal = SIGCHLD;
  args.cgroup = cgroup_fd >= 0 ? static_cast<uint64_t>(cgroup_fd) : 0;
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) return errno_error("clone3");
  return static_cast<pid_t>(pid);
}

Result<Fd> pidfd_open(pid_t pid) {
  long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) return errno_error(fmt::format("pidfd_open {}", pid));
  return Fd(static_cast<int>(fd));
}

Result<void> pidfd_send_signal(int pidfd, int sig) {
  if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) != 0)
    return errno_error(fmt::format("send signal {}", sig));
  return {};
}

Result<bool> pidfd_wait_exit(int pidfd, int timeout_ms) {
  pollfd p{pidfd, POLLIN, 0};
  for (;;) {
    int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("poll pidfd");
    return r > 0;
  }
}

Result<ProcStat> proc_stat(pid_t pid) {
  auto text = read_file(fmt::format("/proc/{}/stat", pid));
  if (!text) return std::unexpected(std::move(text.error()));
  // The command name may contain spaces and parentheses; fields start after the last ')'.
  size_t close = text->rfind(')');
  if (close == std::string::npos) return make_error(ErrorCode::kIo, "malformed /proc stat");
  auto fields = split(std::string_view(*text).substr(close + 2), ' ');
  if (fields.size() < 20) return make_error(ErrorCode::kIo, "malformed /proc stat");
  ProcStat st;
  st.state = fields[0].empty() ? '?' : fields[0][0];
  st.start_time = std::strtoull(fields[19].c_str(), nullptr, 10);
  return st;
}

void close_fds_from(int first, int keep1, int keep2) {
  int keep_lo = std::min(keep1, keep2), keep_hi = std::max(keep1, keep2);
  if (keep_lo < 0) keep_lo = keep_hi;
  auto close_range = [](int lo, int hi) {
    if (lo <= hi) ::syscall(SYS_close_range, lo, hi, 0);
  };
  if (keep_hi < first) {
    close_range(first, INT32_MAX);
    return;
  }
  if (keep_lo >= first) close_range(first, keep_lo - 1);
  if (keep_lo != keep_hi) close_range(std::max(first, keep_lo + 1), keep_hi - 1);
  close_range(std::max(first, keep_hi + 1), INT32_MAX);
}

namespace {

// A one-buffer message with room for one fd in its control data. msg points into the object,
// so it is built in place and never copied.
struct FdMessage {
  FdMessage(const FdMessage&) = delete;
  iovec iov;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  FdMessage(void* data, size_t size) : iov{data, size} {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
  }
};

}  // namespace

Result<void> send_fd(int sock, int fd, std::string_view data) {
  char byte = 0;
  FdMessage m(data.empty() ? &byte : const_cast<char*>(data.data()),
              data.empty() ? 1 : data.size());
  cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  if (::sendmsg(sock, &m.msg, MSG_NOSIGNAL) < 0) return errno_error("send fd");
  return {};
}

Result<std::pair<size_t, Fd>> recv_with_fd(int sock, char* buf, size_t size) {
  FdMessage m(buf, size);
  ssize_t n;
  do {
    n = ::recvmsg(sock, &m.msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno_error("receive");
  Fd passed;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m.msg); c; c = CMSG_NXTHDR(&m.msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int fd;
    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    passed = Fd(fd);
  }
  return std::pair{static_cast<size_t>(n), std::move(passed)};
}

Result<Fd> connect_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return make_error(ErrorCode::kInvalidArgument, "socket path too long: {}", path);
  std::memcpy(addr.sun_path, path.data(), path.size());
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return errno_error(fmt::format("connect {}", path));
  return fd;
}

Result<void> write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("write");
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

int wait_forwarding_signals(pid_t pid, const sigset_t& forward) {
  int status = 0;
  for (;;) {
    siginfo_t info;
    int sig = ::sigwaitinfo(&forward, &info);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      ::kill(pid, sig);
      continue;
    }
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace vireo::container::sys
