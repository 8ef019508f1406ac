#pragma once
// DirPool: the dir pool type (see pool.h). Internal to the storage library.
#include <utility>

#include "storage/pool/pool.h"

namespace vireo::storage {

class DirPool final : public Pool {
 public:
  explicit DirPool(PoolConfig config);
  Result<PoolUsage> usage() override;
  Result<void> create_volume(const std::string& name, uint64_t size, VolumeFormat format) override;
  Result<void> remove_volume(const std::string& name) override;
  Result<void> resize_volume(const std::string& name, uint64_t size) override;
  Result<void> copy_volume(const std::string& src, const std::string& dst,
                           VolumeAccess access) override;
  Result<std::vector<VolumeInfo>> volumes() override;
  Result<std::shared_ptr<BlockDevice>> open_volume(const std::string& name) override;
  Result<PoolCheck> check() override;

 private:
  Result<std::pair<std::filesystem::path, VolumeFormat>> find(const std::string& name) const;
  Result<VolumeInfo> info(const std::string& name) const;
};

}  // namespace vireo::storage
