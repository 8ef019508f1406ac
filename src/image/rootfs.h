#pragma once
// A container's root file system from an image's unpacked layers: an overlayfs mount with the
// layers as lower directories (root), or a flattened copy (the fallback: no root, or layers
// unpacked without privileges whose whiteouts exist only as lists). Plus the image config's
// process settings, mapped to the OCI runtime config.
#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "image/layer_store.h"
#include "image/manifest.h"

namespace vireo::image {

// overlayfs's lowerdir order: the topmost layer first.
std::vector<std::filesystem::path> overlay_lower_dirs(const std::vector<Layer>& bottom_first);

// Mounts overlayfs at target (root only). Fails when a layer's whiteouts are only listed (it
// was unpacked without privileges): overlayfs would not see them; use flatten_layers then.
[[nodiscard]] Result<void> mount_overlay(const std::vector<Layer>& bottom_first,
                                         const std::filesystem::path& upper,
                                         const std::filesystem::path& work,
                                         const std::filesystem::path& target);

// Copies the layers into dest (an existing directory) bottom first, applying whiteouts and
// opaque directories as overlayfs would. Nothing in dest is ever followed: a directory of a
// later layer replaces a symlink an earlier layer put at its path.
[[nodiscard]] Result<void> flatten_layers(const std::vector<Layer>& bottom_first,
                                          const std::filesystem::path& dest, bool privileged);

// The OCI runtime config's process settings from the image config.
struct ProcessConfig {
  std::vector<std::string> args;  // Entrypoint + Cmd
  std::vector<std::string> env;
  std::string cwd = "/";
  std::string user;          // as the image says it ("", "1000", "1000:1000", "app", "app:staff")
  std::optional<uid_t> uid;  // when user is numeric or found in the image's /etc/passwd
  std::optional<gid_t> gid;
};

// kInvalidArgument when the image has neither Entrypoint nor Cmd. Names in User are looked up in
// the layers' etc/passwd and etc/group (topmost first).
[[nodiscard]] Result<ProcessConfig> process_config(const ImageConfig& config,
                                                   const std::vector<Layer>& bottom_first);
// Sets process.args, env, cwd and user (uid/gid when known) of an OCI runtime config.
void apply_process_config(const ProcessConfig& p, Json& spec);

}  // namespace vireo::image
