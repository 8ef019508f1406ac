#pragma once
// The `vireo image build` driver: runs a Containerfile against an ImageStore and commits the
// result as a normal OCI image (manifest, config with diff_ids and history, gzip layers).
//
// Each RUN, COPY and ADD produces one layer: the current state's layers are mounted as an
// overlay over an empty upper directory, the step runs (RUN in a container through the
// vireo-runtime binary, sharing the host's network; COPY/ADD with fd-relative copies into the
// mounted tree), and the upper directory becomes the layer (layer_diff.h). Metadata
// instructions change only the config. Needs root (overlay mounts, containers).
//
// Layer cache: <store root>/build-cache/<key>.json, where the key chains the base image's
// manifest digest and every instruction as evaluated (for RUN its args, env, cwd and user; for
// COPY/ADD also a hash of the copied content with modes). An entry names a layer blob; it is
// used only while that blob is in the store — prune does not know the cache, so the blobs of
// cached layers no image uses are pruned and the next build drops their entries (the step runs
// again).
//
// Scratch space: <store root>/build-tmp/<pid>-<random>/, removed (mounts released, containers
// deleted) when the build ends, also on failure and cancellation; a later build removes what a
// crashed daemon left. Builds may run concurrently; each uses its own scratch directory.
#include <filesystem>
#include <map>
#include <stop_token>
#include <string>
#include <vector>

#include "base/result.h"
#include "image/image_store.h"

namespace vireo::image::build {

struct BuildOptions {
  std::filesystem::path containerfile;  // absolute
  std::filesystem::path context;        // absolute: the directory COPY and ADD read
  std::string tag;                      // NAME[:TAG]; empty: vireo-build:<12 hex of the config>
  std::map<std::string, std::string> build_args;
  bool no_cache = false;
  std::filesystem::path runtime;  // the vireo-runtime binary (RUN steps)
};

struct StepReport {
  int index = 0;  // 1-based
  std::string instruction;
  bool cached = false;
  std::string output;  // RUN's stdout and stderr (the tail, at most kMaxStepOutput bytes)
};

inline constexpr size_t kMaxStepOutput = 64 << 10;

struct BuildResult {
  ImageInfo image;
  int steps = 0;   // instructions run
  int cached = 0;  // layer steps taken from the cache
  std::vector<StepReport> log;
};

// What the caller sees of a running build. Called on the building thread.
class BuildProgress {
 public:
  virtual ~BuildProgress() = default;
  // Before step index of total starts; text is "step 3/7: RUN make".
  virtual void step(int /*index*/, int /*total*/, const std::string& /*text*/) {}
  // Cancellation: the build stops (killing a running RUN) and returns kCancelled.
  virtual std::stop_token stop_token() const { return {}; }
};

[[nodiscard]] Result<BuildResult> build(ImageStore& store, const BuildOptions& options,
                                        BuildProgress& progress);

}  // namespace vireo::image::build
