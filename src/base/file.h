#pragma once
// Whole-file helpers for small files (state, configs, pidfiles).
#include <filesystem>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vireo {

[[nodiscard]] Result<std::string> read_file(const std::filesystem::path& path);

// Writes through a temporary file in the same directory, fsyncs and renames, so readers see
// either the old or the new content, never a torn one.
[[nodiscard]] Result<void> write_file_atomic(const std::filesystem::path& path,
                                             std::string_view content, int mode = 0644);

// mkdir -p with a mode for the directories it creates.
[[nodiscard]] Result<void> make_dirs(const std::filesystem::path& path, int mode = 0755);

}  // namespace vireo
