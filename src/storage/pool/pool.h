#pragma once
// Pool: a place that holds volumes, behind one interface for both pool types.
//   dir  - every volume is a file (raw or qcow2) in a directory
//   thin - Vireo's thin pool (thin_pool.h) on one file or block device
// Pools hand out volumes as BlockDevices; the caller (vireo-storaged) keeps one open device per
// volume and shares it between NBD connections.
//
// Thread safety: a Pool is driven by one control thread; the devices it returns are thread-safe
// (BlockDevice contract).
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/json.h"
#include "storage/block_device.h"
#include "storage/pool/thin_pool.h"

namespace vireo::storage {

enum class PoolType { kDir, kThin };
enum class VolumeFormat { kRaw, kQcow2 };

[[nodiscard]] Result<PoolType> parse_pool_type(std::string_view text);
std::string_view to_string(PoolType type);
[[nodiscard]] Result<VolumeFormat> parse_volume_format(std::string_view text);
std::string_view to_string(VolumeFormat format);

// What a pool is, as stored in vireo-storaged's state directory.
struct PoolConfig {
  std::string name;
  PoolType type = PoolType::kDir;
  std::filesystem::path path;  // the directory (dir) or the pool file / block device (thin)
  uint64_t size = 0;           // thin: bytes of the pool file
  uint32_t extent_size = 64 << 10;
};
Json to_json(const PoolConfig& c);
[[nodiscard]] Result<PoolConfig> pool_config_from_json(const Json& j);

struct VolumeInfo {
  std::string name;
  uint64_t size = 0;
  uint64_t allocated = 0;
  VolumeFormat format = VolumeFormat::kRaw;
  bool read_only = false;
  std::string origin;
};
Json to_json(const VolumeInfo& v);

struct PoolUsage {
  uint64_t capacity = 0;       // bytes volumes can use
  uint64_t used = 0;           // bytes allocated
  uint64_t virtual_bytes = 0;  // sum of volume sizes
  uint64_t volumes = 0;
};

struct PoolCheck {
  uint64_t errors = 0;
  std::vector<std::string> messages;
  bool ok() const { return errors == 0; }
};

class Pool {
 public:
  virtual ~Pool() = default;
  const PoolConfig& config() const { return config_; }

  [[nodiscard]] virtual Result<PoolUsage> usage() = 0;
  [[nodiscard]] virtual Result<void> create_volume(const std::string& name, uint64_t size,
                                                   VolumeFormat format) = 0;
  [[nodiscard]] virtual Result<void> remove_volume(const std::string& name) = 0;
  // Devices already open keep their old size; reopen to see the new one.
  [[nodiscard]] virtual Result<void> resize_volume(const std::string& name, uint64_t size) = 0;
  // kReadOnly: a snapshot; kReadWrite: a writable clone. The caller flushes src's device first.
  [[nodiscard]] virtual Result<void> copy_volume(const std::string& src, const std::string& dst,
                                                 VolumeAccess access) = 0;
  // Reverts volume name to the content (and size) of the snapshot volume snapshot: all or
  // nothing. Devices already open keep the old content or size; reopen after this.
  [[nodiscard]] virtual Result<void> restore_volume(const std::string& name,
                                                    const std::string& snapshot) = 0;
  [[nodiscard]] virtual Result<std::vector<VolumeInfo>> volumes() = 0;
  [[nodiscard]] Result<VolumeInfo> volume(const std::string& name);
  [[nodiscard]] virtual Result<std::shared_ptr<BlockDevice>> open_volume(
      const std::string& name) = 0;
  [[nodiscard]] virtual Result<PoolCheck> check() = 0;

  // Creates the pool's storage (directory, or formatted thin pool file).
  [[nodiscard]] static Result<void> create_storage(const PoolConfig& config);
  [[nodiscard]] static Result<std::unique_ptr<Pool>> open(const PoolConfig& config);
  // Deletes what create_storage made; refuses while the pool holds volumes.
  [[nodiscard]] static Result<void> destroy_storage(const PoolConfig& config);

 protected:
  explicit Pool(PoolConfig config) : config_(std::move(config)) {}
  PoolConfig config_;
};

}  // namespace vireo::storage
