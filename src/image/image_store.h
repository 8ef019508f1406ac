#pragma once
// ImageStore: the host's OCI image store, the library behind `vireo image ...`. Constructed on a
// root directory that it owns:
//   <root>/blobs/<alg>/<hex>          content-addressable blobs (manifests, configs, layer tars)
//   <root>/layers/<diff_id hex>/      unpacked layers, shared between images (overlayfs lowers)
//   <root>/images.json                tags: "name:tag" → manifest digest
//   <root>/tmp/                       scratch space of imports
// An image is a tag naming a manifest; removing a tag leaves the data to prune(), which deletes
// every blob and layer no tag reaches. Every import verifies every digest and diff_id and
// unpacks the layers, so a stored image is complete. All methods are serialized by an internal
// mutex; one ImageStore per root at a time, also across processes (an flock on <root>/lock:
// a second one is refused with kConflict).
#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "image/blob_store.h"
#include "image/layer_store.h"
#include "image/manifest.h"
#include "image/reference.h"
#include "image/rootfs.h"
#include "image/tag_store.h"
#include "image/vm_disk.h"

namespace vireo::image {

enum class ImageKind {
  kContainer,  // tar layers: a container's root file system
  kVm,         // one disk layer (vm_disk.h): a VM's first disk
};

struct ImageInfo {
  std::vector<std::string> tags;  // "name:tag", sorted
  Digest manifest_digest;
  Manifest manifest;
  ImageConfig config;  // of a VM image: architecture and raw only
  uint64_t size = 0;   // compressed layer bytes
  ImageKind kind = ImageKind::kContainer;
  std::optional<VmDiskConfig> vm;  // kVm: the disk's format and virtual size
};

// The disk of a VM image, as a file in the store that must not be written.
struct VmDiskBlob {
  std::filesystem::path file;
  DiskFormat format = DiskFormat::kRaw;
  uint64_t virtual_size = 0;
  Digest digest;
};

struct PruneReport {
  uint64_t blobs_removed = 0;
  uint64_t layers_removed = 0;
  uint64_t bytes_freed = 0;
};

enum class RootfsMode {
  kAuto,     // overlay when privileged and every layer has its markers, else copy
  kOverlay,  // overlayfs over the layer directories (root)
  kCopy,     // a flattened copy of the layers
};

struct PreparedRootfs {
  std::filesystem::path rootfs;                   // <dest>/rootfs, the OCI bundle's root.path
  std::vector<std::filesystem::path> lower_dirs;  // topmost first
  bool overlay = false;                           // mounted: release_rootfs() unmounts
  ProcessConfig process;
};

// Unmounts <dest>/rootfs if it is mounted and removes dest.
[[nodiscard]] Result<void> release_rootfs(const std::filesystem::path& dest);

struct StoreOptions {
  // Make overlayfs whiteouts, opaque markers, device nodes and ownership as root does.
  bool privileged = ::geteuid() == 0;
};

class ImageStore {
 public:
  [[nodiscard]] static Result<std::unique_ptr<ImageStore>> create(const std::filesystem::path& root,
                                                                  StoreOptions options = {});

  // A root file system tarball (uncompressed, gzip or zstd) as a one-layer linux/amd64 image.
  [[nodiscard]] Result<ImageInfo> import_rootfs_tar(const std::filesystem::path& tar,
                                                    std::string_view ref);
  // An OCI image layout directory. The manifest is the index entry whose
  // org.opencontainers.image.ref.name annotation is ref's tag (or the whole ref), else the only
  // one, else the linux/amd64 one.
  [[nodiscard]] Result<ImageInfo> import_oci_layout(const std::filesystem::path& dir,
                                                    std::string_view ref);
  // A tar of an OCI image layout (skopeo copy ... oci-archive:).
  [[nodiscard]] Result<ImageInfo> import_oci_archive(const std::filesystem::path& tar,
                                                     std::string_view ref);
  // A `docker save` tarball (manifest.json, config, layer tars). With an empty ref the first
  // RepoTags entry names the image.
  [[nodiscard]] Result<ImageInfo> import_docker_archive(const std::filesystem::path& tar,
                                                        std::string_view ref);
  // A qcow2 or raw disk file as a VM disk image (vm_disk.h); format nullopt: detected from the
  // content. The file is checked (inspect_disk) before anything is stored.
  [[nodiscard]] Result<ImageInfo> import_vm_disk(const std::filesystem::path& file,
                                                 std::string_view ref,
                                                 std::optional<DiskFormat> format = std::nullopt);
  // Writes the image as an OCI layout into dir (created; must be empty if it exists).
  [[nodiscard]] Result<void> export_oci_layout(std::string_view ref,
                                               const std::filesystem::path& dir);
  // The same layout as one tar file (written to a temporary file, then renamed).
  [[nodiscard]] Result<void> export_oci_archive(std::string_view ref,
                                                const std::filesystem::path& tar);
  // A `docker save` tarball (manifest.json with RepoTags, config, layers as stored).
  [[nodiscard]] Result<void> export_docker_archive(std::string_view ref,
                                                   const std::filesystem::path& tar);
  // The image's layers flattened (whiteouts applied) into one root file system tar; needs
  // scratch space for the flattened tree under <root>/tmp while it is written.
  [[nodiscard]] Result<void> export_rootfs_tar(std::string_view ref,
                                               const std::filesystem::path& tar);

  // Stores and tags an image whose config and layer blobs are already in blobs() (a pull, a
  // build): checks the config, unpacks the layers (verifying their diff_ids), stores the
  // manifest. ref is NAME[:TAG] without a digest.
  [[nodiscard]] Result<ImageInfo> commit(const std::string& manifest_json, std::string_view ref);

  [[nodiscard]] Result<std::vector<ImageInfo>> list();
  [[nodiscard]] Result<ImageInfo> show(std::string_view ref);
  [[nodiscard]] Result<void> tag(std::string_view source_ref, std::string_view new_ref);
  // Removes the tag; the data stays until prune().
  [[nodiscard]] Result<void> remove(std::string_view ref);
  // Removes what neither a tag nor a manifest of in_use (images of existing containers, which
  // the caller knows) reaches.
  [[nodiscard]] Result<PruneReport> prune(const std::vector<Digest>& in_use = {});

  // Held by work that adds blobs and layers before it tags them (a pull, a build, a push that
  // reads them): while one is held, prune() is refused with kConflict instead of deleting what
  // that work has stored but not tagged yet, or its scratch files.
  class Work {
   public:
    explicit Work(ImageStore& s) : s_(&s) { ++s_->work_; }
    ~Work() {
      if (s_) --s_->work_;
    }
    Work(const Work&) = delete;
    Work& operator=(const Work&) = delete;

   private:
    ImageStore* s_;
  };
  [[nodiscard]] Work begin_work() { return Work(*this); }

  // The disk of a VM image, its digest verified again (kInvalidArgument for a container image).
  // The caller holds a Work while it reads the file, so that a prune cannot remove it.
  [[nodiscard]] Result<VmDiskBlob> vm_disk(std::string_view ref);

  // The image's unpacked layers, bottom first (unpacking again any that is missing).
  [[nodiscard]] Result<std::vector<Layer>> unpack(std::string_view ref);

  // A container root file system for the image under dest (created): <dest>/rootfs as an
  // overlay (<dest>/upper and <dest>/work beside it) or a flattened copy; plus the process
  // settings of the image config.
  [[nodiscard]] Result<PreparedRootfs> prepare_rootfs(std::string_view ref,
                                                      const std::filesystem::path& dest,
                                                      RootfsMode mode = RootfsMode::kAuto);

  const std::filesystem::path& root() const { return root_; }
  BlobStore& blobs() { return *blobs_; }
  LayerStore& layers() { return *layers_; }

 private:
  ImageStore(std::filesystem::path root, std::unique_ptr<BlobStore> blobs,
             std::unique_ptr<LayerStore> layers, TagStore tags, bool privileged)
      : root_(std::move(root)),
        privileged_(privileged),
        blobs_(std::move(blobs)),
        layers_(std::move(layers)),
        tags_(std::move(tags)) {}

  // Stores an image whose blobs are already in the blob store: checks the config, unpacks the
  // layers (verifying their diff_ids), stores the manifest and tags it.
  [[nodiscard]] Result<ImageInfo> commit_image(const std::string& manifest_json,
                                               const Reference& ref);
  [[nodiscard]] Result<ImageInfo> load_image(const Digest& manifest_digest);
  // A VM disk image's config and disk blob agree and the disk is a valid image of its format.
  [[nodiscard]] Result<void> check_vm_image(const Manifest& m, const std::string& config_json);
  [[nodiscard]] Result<Digest> resolve(std::string_view ref);
  [[nodiscard]] Result<std::vector<Layer>> unpack_layers(const ImageInfo& image);
  [[nodiscard]] Result<ImageInfo> import_layout_locked(const std::filesystem::path& dir,
                                                       const Reference& ref);
  [[nodiscard]] Result<std::filesystem::path> make_scratch_dir();
  // The image described by the manifest.json of an extracted docker save archive, its config
  // and layer blobs stored.
  [[nodiscard]] Result<std::pair<Manifest, Reference>> docker_manifest(int root_fd,
                                                                       std::string_view ref_text);
  [[nodiscard]] Result<BlobInfo> put_from_archive(int root_fd, const std::string& path);
  std::vector<std::string> tags_of(const Digest& manifest) const;

  std::filesystem::path root_;
  bool privileged_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<LayerStore> layers_;
  TagStore tags_;
  std::mutex mu_;
  Fd lock_;  // flock on <root>/lock: one ImageStore per root across processes
  std::atomic<int> work_{0};
};

}  // namespace vireo::image
