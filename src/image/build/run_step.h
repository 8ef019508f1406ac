#pragma once
// RUN steps of `vireo image build` (internal to vireo_image_build): a container through the
// vireo-runtime binary, its output in a log file, killed on cancellation; and the cleanup of
// what builds of a dead daemon left.
#include <filesystem>
#include <stop_token>
#include <string>

#include "base/result.h"

namespace vireo::image::build {

struct RunOutcome {
  int exit_code = -1;
  int signal = 0;
  std::string output;
};

// Runs the bundle as a container (state under state_root), its stdout and stderr into log.
[[nodiscard]] Result<RunOutcome> run_runtime(const std::filesystem::path& runtime,
                                             const std::filesystem::path& state_root,
                                             const std::filesystem::path& bundle,
                                             const std::filesystem::path& log,
                                             std::stop_token stop);
// The last n lines of output, joined with " | ".
std::string last_lines(const std::string& output, int n);
// Removes what builds of a dead daemon left under tmp_root: containers, mounts, files.
void sweep_stale(const std::filesystem::path& tmp_root, const std::filesystem::path& runtime);

}  // namespace vireo::image::build
