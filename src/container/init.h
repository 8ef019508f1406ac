#pragma once
// The container init: the child the runtime clones into the new namespaces. It waits for the
// parent to finish the outside work (id maps, cgroup), builds the container's view of the world,
// reports "ready" (or the error) over the sync socket, blocks on the exec fifo until `start`,
// and execs the container process. Never returns.
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/json.h"
#include "base/result.h"
#include "container/cgroup.h"
#include "container/config.h"

namespace vireo::container {

// Messages on the sync socket (SOCK_SEQPACKET: one message per send).
enum class SyncMsg : char {
  kGo = 'G',           // parent → init: maps written, cgroup joined
  kRunHooks = 'H',     // init → parent: run prestart + createRuntime hooks now
  kHooksDone = 'h',    // parent → init
  kReady = 'R',        // init → parent: set up, waiting on the exec fifo
  kSeccompFd = 'S',    // init → parent: the seccomp listener fd rides along (SCM_RIGHTS)
  kSeccompDone = 's',  // parent → init: the fd went to linux.seccomp.listenerPath
  kError = 'E',        // either way, followed by the message
};

struct SyncMessage {
  SyncMsg msg;
  std::string text;
  Fd fd;  // set only for kSeccompFd
};

[[nodiscard]] Result<void> send_sync(int fd, SyncMsg msg, std::string_view text = {});
// Receives one message; a closed peer is an error.
[[nodiscard]] Result<SyncMessage> recv_sync(int fd);
// Child side: hands the seccomp listener fd (if valid) to the parent and waits until it has
// been passed on.
[[nodiscard]] Result<void> hand_over_listener(int sync_fd, const Fd& listener);
// Parent side: sends the listener fd with the container process state (OCI
// containerProcessState) to linux.seccomp.listenerPath, then tells the child to go on.
[[nodiscard]] Result<void> forward_listener(int sync_fd, const Seccomp& seccomp, Fd listener,
                                            pid_t pid, const Json& state);
// Waits for want; an kError message becomes the error.
[[nodiscard]] Result<void> expect_sync(int fd, SyncMsg want);

struct InitContext {
  const Config* config = nullptr;
  const Cgroup* cgroup = nullptr;
  int sync_fd = -1;
  int fifo_fd = -1;     // O_PATH to <state>/exec.fifo; -1 for `run` without a fifo
  int console_fd = -1;  // connected --console-socket
  bool no_pivot = false;
  int preserve_fds = 0;
  // Namespaces joined by path in the init (not pid/time, which the parent enters for it).
  std::vector<std::pair<NamespaceType, int>> join_fds;
  bool new_user_ns = false;
  bool new_cgroup_ns = false;
};

[[noreturn]] void run_container_init(const InitContext& ctx);

}  // namespace vireo::container
