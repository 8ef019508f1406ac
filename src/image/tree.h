#pragma once
// Path work inside an untrusted directory tree (an unpacked layer, an extracted archive):
// everything is relative to a directory fd and resolved with openat2(RESOLVE_IN_ROOT |
// RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS), so no path — whatever symlinks the tree holds —
// can reach outside it, and nothing is ever followed through a symlink.
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace vireo::image {

inline constexpr size_t kMaxPathDepth = 256;

// The components of a relative path from an archive or a manifest, without "" and "."; an
// absolute path, a ".." component, a name over NAME_MAX or a path deeper than kMaxPathDepth is
// kInvalidArgument. An empty result is the root itself.
[[nodiscard]] Result<std::vector<std::string>> split_relative_path(std::string_view path);

// Opens the directory reached by components from root_fd (O_RDONLY | O_DIRECTORY), never
// through a symlink: kInvalidArgument "... goes through a symlink" when one is in the way.
// With create, missing directories are made (mode 0755).
enum class CreateDirs { kNo, kYes };
[[nodiscard]] Result<Fd> open_dir_in(int root_fd, const std::vector<std::string>& components,
                                     CreateDirs create);
// Opens a file under root_fd by a relative path, resolved in root and not through symlinks.
[[nodiscard]] Result<Fd> open_in_root(int root_fd, std::string_view path, int flags);

// Removes name under dir_fd (recursively for a directory), never following symlinks, making
// directories writable first. Absent is not an error.
[[nodiscard]] Result<void> remove_at(int dir_fd, const std::string& name);
// Removes a whole tree by path (the last component is not followed if it is a symlink).
[[nodiscard]] Result<void> remove_tree(const std::filesystem::path& path);
// Bytes used by the regular files of a tree (not following symlinks).
uint64_t tree_size(const std::filesystem::path& path);

}  // namespace vireo::image
