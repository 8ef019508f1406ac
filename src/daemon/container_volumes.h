#pragma once
// Named volumes for containers in vireod: a volume of any pool (vireo-storaged) is mounted on
// the host through a loop device at <root>/containers/volumes/POOL/VOL — with an ext4 file
// system made first on a volume that was never written — and bind-mounted into the containers
// that use it. A raw volume of a dir pool is looped directly; thin and qcow2 volumes through
// nbdfuse over their NBD export (the host has no kernel NBD everywhere; FUSE it has).
// Docs: docs/containers.md, "Volumes".
#include <filesystem>
#include <mutex>

#include "containers/engine.h"

namespace vireo::daemon {

class StorageManager;

class StorageVolumes final : public containers::VolumeBackend {
 public:
  StorageVolumes(StorageManager& storage, std::filesystem::path mount_root)
      : storage_(storage), mount_root_(std::move(mount_root)) {}
  Result<Mounted> acquire(const std::string& volume) override;
  void release(const std::string& volume) override;

 private:
  Result<std::filesystem::path> volume_file(const std::string& pool, const std::string& name);
  void release_file(const std::string& volume);

  StorageManager& storage_;
  std::filesystem::path mount_root_;
  std::mutex mutex_;  // one mount or unmount at a time
};

}  // namespace vireo::daemon
