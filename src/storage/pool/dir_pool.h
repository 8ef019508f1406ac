#pragma once
// DirPool: the dir pool type (see pool.h). Internal to the storage library.
//
// A qcow2 volume has at most one open Qcow2 instance per pool: open_volume hands out the same
// device while it is alive, and resize_volume and check() go through it, because two writers
// on one qcow2 file (each with its own tables and allocator) would corrupt it.
#include <map>
#include <memory>
#include <utility>

#include "storage/pool/pool.h"
#include "storage/qcow2/qcow2.h"

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
  Result<void> restore_volume(const std::string& name, const std::string& snapshot) override;
  Result<std::vector<VolumeInfo>> volumes() override;
  Result<std::shared_ptr<BlockDevice>> open_volume(const std::string& name) override;
  Result<PoolCheck> check() override;

 private:
  Result<std::pair<std::filesystem::path, VolumeFormat>> find(const std::string& name) const;
  Result<VolumeInfo> info(const std::string& name) const;
  std::shared_ptr<Qcow2> live_qcow2(const std::string& name) const;

  std::map<std::string, std::weak_ptr<Qcow2>> qcow2_open_;  // volume name -> open instance
};

}  // namespace vireo::storage
