#include "storage/pool/pool.h"

#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/strings.h"
#include "storage/pool/dir_pool.h"

namespace vireo::storage {
namespace {

namespace fs = std::filesystem;

class ThinPoolAdapter final : public Pool {
 public:
  ThinPoolAdapter(PoolConfig config, std::shared_ptr<ThinPool> pool)
      : Pool(std::move(config)), pool_(std::move(pool)) {}

  Result<PoolUsage> usage() override {
    ThinPoolStats s = pool_->stats();
    return PoolUsage{s.data_bytes(), s.used_bytes(), s.virtual_bytes, s.volumes};
  }
  Result<void> create_volume(const std::string& name, uint64_t size, VolumeFormat format) override {
    if (format != VolumeFormat::kRaw)
      return make_error(ErrorCode::kInvalidArgument, "thin pool volumes are raw");
    return pool_->create_volume(name, size);
  }
  Result<void> remove_volume(const std::string& name) override {
    return pool_->remove_volume(name);
  }
  Result<void> resize_volume(const std::string& name, uint64_t size) override {
    return pool_->resize_volume(name, size);
  }
  Result<void> copy_volume(const std::string& src, const std::string& dst,
                           VolumeAccess access) override {
    return pool_->snapshot(src, dst, access);
  }
  Result<void> restore_volume(const std::string& name, const std::string& snapshot) override {
    return pool_->restore(name, snapshot);
  }
  Result<std::vector<VolumeInfo>> volumes() override {
    std::vector<VolumeInfo> out;
    for (const ThinVolumeInfo& v : pool_->volumes())
      out.push_back({v.name, v.size, v.allocated, VolumeFormat::kRaw, v.read_only, v.origin});
    return out;
  }
  Result<std::shared_ptr<BlockDevice>> open_volume(const std::string& name) override {
    return pool_->open_volume(name);
  }
  Result<PoolCheck> check() override {
    ThinCheckResult r = pool_->check();
    return PoolCheck{r.errors, r.messages};
  }

 private:
  std::shared_ptr<ThinPool> pool_;
};

}  // namespace

Result<PoolType> parse_pool_type(std::string_view text) {
  if (text == "dir") return PoolType::kDir;
  if (text == "thin") return PoolType::kThin;
  return make_error(ErrorCode::kInvalidArgument, "pool type must be dir or thin, not '{}'", text);
}

std::string_view to_string(PoolType type) {
  return type == PoolType::kThin ? "thin" : "dir";
}

Result<VolumeFormat> parse_volume_format(std::string_view text) {
  if (text == "raw") return VolumeFormat::kRaw;
  if (text == "qcow2") return VolumeFormat::kQcow2;
  return make_error(ErrorCode::kInvalidArgument, "volume format must be raw or qcow2, not '{}'",
                    text);
}

std::string_view to_string(VolumeFormat format) {
  return format == VolumeFormat::kQcow2 ? "qcow2" : "raw";
}

Json to_json(const PoolConfig& c) {
  Json j = {{"name", c.name}, {"type", to_string(c.type)}, {"path", c.path.string()}};
  if (c.type == PoolType::kThin) {
    j["size"] = c.size;
    j["extent_size"] = c.extent_size;
  }
  return j;
}

Result<PoolConfig> pool_config_from_json(const Json& j) {
  if (!j.is_object()) return make_error(ErrorCode::kInvalidArgument, "pool must be an object");
  PoolConfig c;
  if (!j.contains("name") || !j["name"].is_string())
    return make_error(ErrorCode::kInvalidArgument, "pool: 'name' is required");
  c.name = j["name"].get<std::string>();
  TRY(validate_name(c.name, "pool"));
  if (!j.contains("type") || !j["type"].is_string())
    return make_error(ErrorCode::kInvalidArgument, "pool {}: 'type' is required", c.name);
  c.type = TRY(parse_pool_type(j["type"].get<std::string>()));
  if (!j.contains("path") || !j["path"].is_string())
    return make_error(ErrorCode::kInvalidArgument, "pool {}: 'path' is required", c.name);
  c.path = j["path"].get<std::string>();
  if (!c.path.is_absolute())
    return make_error(ErrorCode::kInvalidArgument, "pool {}: path must be absolute", c.name);
  for (const char* key : {"size", "extent_size"}) {
    if (!j.contains(key)) continue;
    uint64_t v = 0;
    if (j[key].is_number_unsigned()) {
      v = j[key].get<uint64_t>();
    } else if (j[key].is_string()) {
      v = TRY(parse_size(j[key].get<std::string>()));
    } else {
      return make_error(ErrorCode::kInvalidArgument, "pool {}: '{}' must be a size", c.name, key);
    }
    if (std::string_view(key) == "size")
      c.size = v;
    else if (v > (1u << 20))
      return make_error(ErrorCode::kInvalidArgument, "pool {}: extent size too large", c.name);
    else
      c.extent_size = uint32_t(v);
  }
  return c;
}

Json to_json(const VolumeInfo& v) {
  Json j = {{"name", v.name},           {"size", v.size},
            {"allocated", v.allocated}, {"format", to_string(v.format)},
            {"read_only", v.read_only}, {"type", v.read_only ? "snapshot" : "volume"}};
  if (!v.origin.empty()) j["origin"] = v.origin;
  return j;
}

Result<VolumeInfo> Pool::volume(const std::string& name) {
  TRY(validate_name(name, "volume"));
  for (VolumeInfo& v : TRY(volumes()))
    if (v.name == name) return std::move(v);
  return make_error(ErrorCode::kNotFound, "volume {} not found in pool {}", name, config_.name);
}

Result<void> Pool::create_storage(const PoolConfig& c) {
  if (c.type == PoolType::kDir) {
    struct stat st {};
    if (::stat(c.path.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
      return make_error(ErrorCode::kInvalidArgument, "{} exists and is not a directory",
                        c.path.string());
    return make_dirs(c.path, 0750);
  }
  struct stat st {};
  bool exists = ::stat(c.path.c_str(), &st) == 0;
  if (exists && !S_ISBLK(st.st_mode))
    return make_error(ErrorCode::kAlreadyExists,
                      "{} exists (a thin pool needs a new file or a "
                      "block device)",
                      c.path.string());
  if (!exists && c.size == 0)
    return make_error(ErrorCode::kInvalidArgument, "a thin pool on a file needs a size");
  return ThinPool::create(c.path, {.size = c.size, .extent_size = c.extent_size});
}

Result<std::unique_ptr<Pool>> Pool::open(const PoolConfig& c) {
  if (c.type == PoolType::kDir) {
    struct stat st {};
    if (::stat(c.path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return make_error(ErrorCode::kUnavailable, "pool {}: directory {} is missing", c.name,
                        c.path.string());
    return std::unique_ptr<Pool>(new DirPool(c));
  }
  auto thin = TRY_CTX(ThinPool::open(c.path), "pool {}", c.name);
  return std::unique_ptr<Pool>(new ThinPoolAdapter(c, std::move(thin)));
}

Result<void> Pool::destroy_storage(const PoolConfig& c) {
  if (c.type == PoolType::kDir) {
    ::rmdir(c.path.c_str());  // only when empty: files that are not volumes stay
    return {};
  }
  struct stat st {};
  if (::stat(c.path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::unlink(c.path.c_str()) != 0)
    return errno_error("remove " + c.path.string());
  return {};
}

}  // namespace vireo::storage
