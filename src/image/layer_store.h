#pragma once
// LayerStore: unpacked layers under <root>/layers/<diff_id hex>/, one directory per distinct
// layer, shared by every image that has it. A layer is unpacked into a temporary directory
// beside them and renamed into place only when complete and its diff_id checked, so a layer
// directory is never partial. Whiteouts and opaque directories that could not be made as
// overlayfs markers (unprivileged) are listed in <hex>.whiteouts.json beside the directory.
// Not thread-safe: ImageStore serializes its calls.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "image/digest.h"
#include "image/layer_unpack.h"

namespace vireo::image {

struct Layer {
  Digest diff_id;
  std::filesystem::path dir;
  // Markers that are not in dir as overlayfs expects them (see layer_unpack.h).
  std::vector<std::string> whiteouts;
  std::vector<std::string> opaque_dirs;
  bool has_pending_markers() const { return !whiteouts.empty() || !opaque_dirs.empty(); }
};

class LayerStore {
 public:
  [[nodiscard]] static Result<std::unique_ptr<LayerStore>> create(const std::filesystem::path& root,
                                                                  bool privileged);

  // Unpacks a layer tar stream; with expected, its diff_id must match (else nothing is kept).
  // When the layer is already present, the existing directory is kept and the new copy
  // discarded (callers check has() first to avoid the work).
  [[nodiscard]] Result<Layer> unpack(const ReadFn& source, const std::optional<Digest>& expected);
  bool has(const Digest& diff_id) const;
  [[nodiscard]] Result<Layer> get(const Digest& diff_id) const;
  [[nodiscard]] Result<std::vector<Digest>> list() const;
  // Removes the layer directory and its marker list; returns the bytes freed.
  [[nodiscard]] Result<uint64_t> remove(const Digest& diff_id);
  // Removes leftovers of interrupted unpacks; returns the bytes freed.
  uint64_t remove_temporaries();
  std::filesystem::path path_of(const Digest& diff_id) const { return dir_ / diff_id.hex; }

 private:
  LayerStore(std::filesystem::path dir, bool privileged)
      : dir_(std::move(dir)), privileged_(privileged) {}
  std::filesystem::path sidecar_of(const Digest& d) const {
    return dir_ / (d.hex + ".whiteouts.json");
  }
  [[nodiscard]] Result<Layer> commit(const std::filesystem::path& tmp, const UnpackSummary& s);

  std::filesystem::path dir_;
  bool privileged_;
};

}  // namespace vireo::image
