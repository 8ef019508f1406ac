#pragma once
// Thin Result-returning wrappers for the Linux calls the runtime needs that glibc 2.36 lacks or
// that are used with one fixed pattern (openat2 inside a root, mount through /proc/self/fd, pidfd
// signalling). Stateless; safe from any thread, and async-signal-safe where noted.
#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace vireo::container::sys {

// openat2(root, path, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): symlinks and ".." in path can
// never leave root, which is how mount targets stay inside the rootfs.
[[nodiscard]] Result<Fd> open_in_root(int root_fd, const std::string& path, int flags,
                                      mode_t mode = 0);
// Creates the missing directories of path (resolved inside root) and opens the result O_PATH.
[[nodiscard]] Result<Fd> make_dirs_in_root(int root_fd, const std::string& path, mode_t mode);
// Creates an empty file at path (resolved inside root) unless something exists there.
[[nodiscard]] Result<void> make_file_in_root(int root_fd, const std::string& path);

// "/proc/self/fd/N": the path form of an fd, for calls that take paths (mount).
std::string fd_path(int fd);

[[nodiscard]] Result<void> mount(const std::string& source, const std::string& target,
                                 const std::string& type, unsigned long flags,
                                 const std::string& data);
// mount() with the target given as an fd (typically O_PATH from open_in_root).
[[nodiscard]] Result<void> mount_at(const std::string& source, int target_fd,
                                    const std::string& type, unsigned long flags,
                                    const std::string& data, const std::string& what);

[[nodiscard]] Result<pid_t> clone3(uint64_t flags, int* pidfd, int cgroup_fd = -1);
[[nodiscard]] Result<Fd> pidfd_open(pid_t pid);
[[nodiscard]] Result<void> pidfd_send_signal(int pidfd, int sig);
// Waits until the process behind pidfd exits or timeout_ms passes (-1: forever).
[[nodiscard]] Result<bool> pidfd_wait_exit(int pidfd, int timeout_ms);

// Field 22 of /proc/pid/stat (start time in clock ticks) and field 3 (state letter), used to
// tell a live process from a reused pid or a zombie.
struct ProcStat {
  uint64_t start_time = 0;
  char state = '?';
};
[[nodiscard]] Result<ProcStat> proc_stat(pid_t pid);

// Closes every fd from first upwards except keep (-1: none).
void close_fds_from(int first, int keep1 = -1, int keep2 = -1);

// Sends fd over a unix socket with SCM_RIGHTS, along with data (at least one byte is sent).
[[nodiscard]] Result<void> send_fd(int sock, int fd, std::string_view data = {});
// Receives one message into buf, and the fd that came with it if any (retrying on EINTR).
[[nodiscard]] Result<std::pair<size_t, Fd>> recv_with_fd(int sock, char* buf, size_t size);
[[nodiscard]] Result<Fd> connect_unix(const std::string& path);

// Writes all of data to fd (retrying on EINTR / short writes).
[[nodiscard]] Result<void> write_all(int fd, std::string_view data);

// Waits for pid to exit while passing every signal in `forward` (blocked by the caller) on to
// it; returns the shell-style exit code (128 + signal for a killed process).
int wait_forwarding_signals(pid_t pid, const sigset_t& forward);

}  // namespace vireo::container::sys
