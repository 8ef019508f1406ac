#pragma once
// Small process and fd plumbing shared by vireo-monitor and vireod's interactive exec: header
// only, because the monitor links no library but its own (it keeps under 1 MiB resident).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

extern char** environ;

namespace vireo {

inline Result<void> set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return errno_error("fcntl");
  return {};
}

// Starts argv[0] (searched in PATH when it has no '/') with stdin, stdout and stderr on the
// given fds, every signal unblocked and at its default action (the caller's threads may block
// some), optionally in a session of its own. Nothing else is inherited when the caller opens
// everything O_CLOEXEC.
[[nodiscard]] inline Result<pid_t> spawn_with_stdio(const std::vector<std::string>& argv, int in,
                                                    int out, int err, bool new_session = false) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in, 0);
  posix_spawn_file_actions_adddup2(&fa, out, 1);
  posix_spawn_file_actions_adddup2(&fa, err, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                      (new_session ? POSIX_SPAWN_SETSID : 0));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = argv[0].find('/') == std::string::npos
               ? ::posix_spawnp(&pid, args[0], &fa, &attr, args.data(), environ)
               : ::posix_spawn(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return std::unexpected(Error::from_errno(rc, "start " + argv[0]));
  return pid;
}

// The fd sent with SCM_RIGHTS on the connected socket conn (as an OCI runtime sends a
// container's pty master to --console-socket), close-on-exec and non-blocking.
[[nodiscard]] inline Result<Fd> receive_fd(int conn) {
  char byte[256];
  iovec iov{byte, sizeof byte};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(conn, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno_error("console socket: receive");
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int fd;
    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    Fd received(fd);
    TRY(set_nonblocking(received.get()));
    return received;
  }
  return make_error(ErrorCode::kIo, "console socket: no file descriptor received");
}

}  // namespace vireo
