#pragma once
// Runs one application in a sandbox: new user, mount, pid, ipc and uts namespaces (and net when
// asked), the host filesystem read-only, and writes to system paths redirected into the app's
// store (app_paths.h) with overlayfs, so the app keeps its changes across runs while the host
// never changes. Works as root (kernel overlayfs, an identity user namespace) and as an
// unprivileged user (fuse-overlayfs presenting system files as the user's own, since the kernel
// will not let an unprivileged namespace write over files of unmapped owners); no setuid helper.
//
// The caller's process waits for the app and forwards signals; stdio and the terminal are
// inherited, so they pass through untouched.
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace vireo::sandbox {

enum class Profile { kDefault, kStrict };
enum class NetMode { kHost, kNone };

struct Bind {
  std::string source, target;
  bool read_only = false;
};

struct SandboxSpec {
  std::string name;                  // the app, whose store is used
  std::vector<std::string> command;  // argv; argv[0] searched on PATH inside
  Profile profile = Profile::kDefault;
  std::optional<NetMode> net;  // default: host, none in the strict profile
  std::vector<Bind> binds;
  std::vector<std::string> redirect;   // extra redirected paths, remembered by the app
  std::vector<std::string> with_apps;  // connection group: these apps' stores are visible
  std::optional<uint64_t> memory_limit;
  std::vector<std::string> env;  // added to the environment
  std::string package_files;     // a package's files tree, layered over the host
  // A host interface (one end of a veth pair on a network) that becomes the app's eth0, with
  // its address from DHCP (busybox udhcpc). Root only; implies a network namespace.
  std::string net_iface;
};

// Runs the app to its end; returns its exit status the way a shell reports it (128 + signal).
// Errors are set-up failures: nothing started, nothing on the host changed.
[[nodiscard]] Result<int> run_sandbox(const SandboxSpec& spec);

}  // namespace vireo::sandbox
