#pragma once
// Host network plumbing for instances (containers, sandboxed apps): persistent network
// namespaces and veth pairs, done over rtnetlink (libmnl), without the `ip` tool.
//
// A persistent namespace is a bind mount of a namespace's nsfs file onto a regular file (as
// `ip netns add` does), so it outlives the process that made it: a container's namespace lives
// from its first start to its removal, across restarts of the container and of vireod.
// After a host reboot the file is still there but no longer a mount: netns_alive() says so and
// the namespace is made again.
//
// Thread-safe: namespace switches happen on short-lived threads of their own, never on the
// caller's thread.
#include <cstdint>
#include <filesystem>
#include <string>

#include "base/result.h"

namespace vireo::net::host {

// Makes a new network namespace and pins it at path (a file created for it; its directory must
// exist). kAlreadyExists when path already holds a live namespace.
[[nodiscard]] Result<void> create_netns(const std::filesystem::path& path);
// Whether path is a pinned network namespace (a mount of an nsfs file).
bool netns_alive(const std::filesystem::path& path);
// Unpins and removes the file (lazy unmount); the namespace ends with its last user. A missing
// path is fine.
[[nodiscard]] Result<void> remove_netns(const std::filesystem::path& path);

// The configuration of an instance's interface inside its namespace.
struct InterfaceConfig {
  std::string name = "eth0";
  uint8_t mac[6] = {};
  uint32_t address = 0;  // IPv4, host byte order
  int prefix = 24;
  uint32_t gateway = 0;  // 0: no default route
  int mtu = 1500;
};

// Creates a veth pair: host_name stays in the host's namespace (up, MTU cfg.mtu, no address);
// its peer is created directly in the namespace pinned at netns as cfg.name with cfg.mac and
// cfg.mtu, gets cfg.address/cfg.prefix, is brought up with lo, and gets a default route via
// cfg.gateway. On failure nothing is left behind (the pair is deleted). kAlreadyExists when
// host_name exists; kInvalidArgument for a name longer than 15 bytes.
[[nodiscard]] Result<void> create_veth(const std::string& host_name,
                                       const std::filesystem::path& netns,
                                       const InterfaceConfig& cfg);
// Deletes a link of the host namespace (a veth's peer goes with it). A missing link is fine.
[[nodiscard]] Result<void> delete_link(const std::string& name);
// Whether a link of that name exists in the host namespace.
bool link_exists(const std::string& name);

}  // namespace vireo::net::host
