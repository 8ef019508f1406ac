// Storaged's control commands: pool.* and vol.*.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "base/file.h"
#include "base/log.h"
#include "base/rollback.h"
#include "base/strings.h"
#include "storage/image.h"
#include "storage/qcow2/qcow2.h"
#include "storage/storaged/storaged.h"

namespace vireo::storage {
namespace {

constexpr size_t kCopyChunk = 1 << 20;

Result<std::string> get_string(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return make_error(ErrorCode::kInvalidArgument, "missing field '{}'", key);
  if (!it->is_string())
    return make_error(ErrorCode::kInvalidArgument, "'{}' must be a string", key);
  return it->get<std::string>();
}

std::string get_optional(const Json& j, const char* key, const std::string& fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

// A size as a number of bytes or a string like "10G".
Result<uint64_t> get_size(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return make_error(ErrorCode::kInvalidArgument, "missing field '{}'", key);
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_string()) return parse_size(it->get<std::string>());
  return make_error(ErrorCode::kInvalidArgument, "'{}' must be a size (\"10G\" or bytes)", key);
}

Result<std::filesystem::path> get_file(const Json& j) {
  std::filesystem::path p = TRY(get_string(j, "file"));
  if (!p.is_absolute())
    return make_error(ErrorCode::kInvalidArgument, "'file' must be an absolute path");
  return p;
}

bool all_zero(std::span<const uint8_t> b) {
  return std::all_of(b.begin(), b.end(), [](uint8_t c) { return c == 0; });
}

// Copies src into dst (same size or larger), skipping what src reports as zero and chunks that
// read as zeroes, so that thin and sparse targets stay thin.
Result<uint64_t> copy_device(BlockDevice& src, BlockDevice& dst) {
  std::vector<uint8_t> buf(kCopyChunk);
  uint64_t size = src.size(), off = 0, written = 0;
  while (off < size) {
    std::vector<Extent> st = TRY(src.block_status(std::min<uint64_t>(size - off, 1ull << 30), off));
    uint64_t len = std::min(st.front().length, size - off);
    if (len == 0) return make_error(ErrorCode::kInternal, "block status returned an empty extent");
    if (st.front().flags & Extent::kZero) {
      off += len;
      continue;
    }
    for (uint64_t end = off + len; off < end;) {
      size_t n = size_t(std::min<uint64_t>(end - off, kCopyChunk));
      auto chunk = std::span(buf).first(n);
      TRY(src.read(chunk, off));
      if (!all_zero(chunk)) {
        TRY(dst.write(chunk, off));
        written += n;
      }
      off += n;
    }
  }
  TRY(dst.flush());
  return written;
}

}  // namespace

Result<Storaged::PoolEntry*> Storaged::entry(const Json& r, const char* key) {
  std::string name = TRY(get_string(r, key));
  TRY(validate_name(name, "pool"));
  auto it = pools_.find(name);
  if (it == pools_.end()) return make_error(ErrorCode::kNotFound, "pool {} not found", name);
  return &it->second;
}

Result<Pool*> Storaged::pool(PoolEntry& e) {
  if (!e.pool)
    return make_error(ErrorCode::kUnavailable, "pool {} is unavailable: {}", e.config.name,
                      e.error);
  return e.pool.get();
}

Json Storaged::volume_json(const PoolEntry& e, const VolumeInfo& v) const {
  Json j = to_json(v);
  std::string name = e.config.name + "/" + v.name;
  j["pool"] = e.config.name;
  j["export"] = name;
  j["uri"] = "nbd+unix:///" + name + "?socket=" + options_.nbd_socket.string();
  if (!tcp_address_.empty())
    j["tcp_uri"] = (options_.nbd_tls.enabled() ? "nbds://" : "nbd://") + tcp_address_ + "/" + name;
  // The volume's own file, for consumers that use it directly (loop mounts for containers).
  if (e.config.type == PoolType::kDir)
    j["file"] = (e.config.path / (v.name + (v.format == VolumeFormat::kQcow2 ? ".qcow2" : ".raw")))
                    .string();
  return j;
}

Result<Json> Storaged::pool_create(const Json& r) {
  PoolConfig c = TRY(pool_config_from_json(r));
  if (pools_.count(c.name)) return make_error(ErrorCode::kAlreadyExists, "pool {} exists", c.name);
  for (const auto& [name, e] : pools_)
    if (e.config.path == c.path)
      return make_error(ErrorCode::kConflict, "{} is used by pool {}", c.path.string(), name);
  Rollback undo;
  TRY(Pool::create_storage(c));
  undo.add([c] { (void)Pool::destroy_storage(c); });
  std::unique_ptr<Pool> p = TRY(Pool::open(c));
  TRY(write_file_atomic(def_path(c.name), to_json(c).dump(2) + "\n", 0600));
  undo.commit();
  PoolEntry& e = pools_[c.name];
  e.config = c;
  e.pool = std::move(p);
  return to_json(c);
}

Result<Json> Storaged::pool_list() {
  Json list = Json::array();
  for (auto& [name, e] : pools_) {
    Json j = to_json(e.config);
    if (!e.pool) {
      j["status"] = "unavailable";
      j["error"] = e.error;
    } else if (Result<PoolUsage> u = e.pool->usage()) {
      j["status"] = "ready";
      j["capacity"] = u->capacity;
      j["used"] = u->used;
      j["volumes"] = u->volumes;
    }
    list.push_back(std::move(j));
  }
  return Json{{"pools", list}};
}

Result<Json> Storaged::pool_show(const Json& r) {
  PoolEntry* e = TRY(entry(r, "name"));
  Pool* p = TRY(pool(*e));
  PoolUsage u = TRY(p->usage());
  Json j = to_json(e->config);
  j["status"] = "ready";
  j["capacity"] = u.capacity;
  j["used"] = u.used;
  j["free"] = u.capacity > u.used ? u.capacity - u.used : 0;
  j["virtual"] = u.virtual_bytes;
  j["volumes"] = u.volumes;
  Json warnings = Json::array();
  if (e->config.type == PoolType::kThin && u.virtual_bytes > u.capacity)
    warnings.push_back(fmt::format("overcommitted: volumes total {} on {} of space",
                                   format_bytes(u.virtual_bytes), format_bytes(u.capacity)));
  if (u.capacity && u.used * 10 >= u.capacity * 9)
    warnings.push_back(
        fmt::format("{} of {} used", format_bytes(u.used), format_bytes(u.capacity)));
  j["warnings"] = warnings;
  return j;
}

Result<Json> Storaged::pool_remove(const Json& r) {
  PoolEntry* e = TRY(entry(r, "name"));
  if (e->pool) {
    std::vector<VolumeInfo> vols = TRY(e->pool->volumes());
    if (!vols.empty())
      return make_error(ErrorCode::kConflict, "pool {} still holds {} volumes", e->config.name,
                        vols.size());
  }
  PoolConfig c = e->config;
  // An unavailable pool's storage may hold volumes we cannot see: only its definition goes.
  bool keep_storage = !e->pool;
  pools_.erase(c.name);  // closes the pool
  if (::unlink(def_path(c.name).c_str()) != 0 && errno != ENOENT)
    return errno_error("remove pool definition");
  if (!keep_storage) TRY(Pool::destroy_storage(c));
  return Json{{"name", c.name}, {"storage_kept", keep_storage}};
}

Result<Json> Storaged::pool_check(const Json& r) {
  PoolEntry* e = TRY(entry(r, "name"));
  Pool* p = TRY(pool(*e));
  TRY(flush_devices(*e));
  PoolCheck c = TRY(p->check());
  return Json{
      {"name", e->config.name}, {"clean", c.ok()}, {"errors", c.errors}, {"messages", c.messages}};
}

Result<Json> Storaged::vol_create(const Json& r) {
  PoolEntry* e = TRY(entry(r));
  Pool* p = TRY(pool(*e));
  std::string name = TRY(get_string(r, "name"));
  uint64_t size = TRY(get_size(r, "size"));
  VolumeFormat format = TRY(parse_volume_format(get_optional(r, "format", "raw")));
  TRY(p->create_volume(name, size, format));
  if (Result<void> x = export_volume(*e, name); !x) {
    (void)p->remove_volume(name);
    return std::unexpected(x.error());
  }
  return volume_json(*e, TRY(p->volume(name)));
}

Result<Json> Storaged::vol_list(const Json& r) {
  PoolEntry* e = TRY(entry(r));
  Pool* p = TRY(pool(*e));
  Json list = Json::array();
  for (const VolumeInfo& v : TRY(p->volumes())) list.push_back(volume_json(*e, v));
  return Json{{"volumes", list}};
}

Result<Json> Storaged::vol_show(const Json& r) {
  PoolEntry* e = TRY(entry(r));
  Pool* p = TRY(pool(*e));
  return volume_json(*e, TRY(p->volume(TRY(get_string(r, "name")))));
}

Result<Json> Storaged::vol_remove(const Json& r) {
  PoolEntry* e = TRY(entry(r));
  Pool* p = TRY(pool(*e));
  std::string name = TRY(get_string(r, "name"));
  TRY(p->volume(name));
  unexport_volume(*e, name);
  TRY(p->remove_volume(name));
  return Json{{"name", name}, {"pool", e->config.name}};
}

Result<Json> Storaged::vol_resize(const Json& r) {
  PoolEntry* e = TRY(entry(r));
  Pool* p = TRY(pool(*e));
  std::string name = TRY(get_string(r, "name"));
  uint64_t size = TRY(get_size(r, "size"));
  TRY(p->volume(name));
  if (auto it = e->devices.find(name); it != e->devices.end()) TRY(it->second->flush());
  TRY(p->resize_volume(name, size));
  TRY(export_volume(*e, name));  // new connections see the new size
  return volume_json(*e, TRY(p->volume(name)));
}

Result<Json> Storaged::vol_copy(const Json& r, VolumeAccess access) {
  PoolEntry* e = TRY(entry(r));
  Pool* p = TRY(pool(*e));
  std::string src = TRY(get_string(r, "name"));
  std::string dst = TRY(get_string(r, access == VolumeAccess::kReadOnly ? "snapshot" : "clone"));
  TRY(p->volume(src));
  if (auto it = e->devices.find(src); it != e->devices.end()) TRY(it->second->flush());
  TRY(p->copy_volume(src, dst, access));
  if (Result<void> x = export_volume(*e, dst); !x) {
    (void)p->remove_volume(dst);
    return std::unexpected(x.error());
  }
  return volume_json(*e, TRY(p->volume(dst)));
}

// {"pool", "name", "snapshot"}: the volume's content becomes the snapshot's; the export then
// serves the restored volume (connections made before keep the device they had).
Result<Json> Storaged::vol_restore(const Json& r) {
  PoolEntry* e = TRY(entry(r));
  Pool* p = TRY(pool(*e));
  std::string name = TRY(get_string(r, "name"));
  std::string snapshot = TRY(get_string(r, "snapshot"));
  TRY(p->volume(name));
  TRY(p->volume(snapshot));
  if (auto it = e->devices.find(name); it != e->devices.end()) TRY(it->second->flush());
  TRY(p->restore_volume(name, snapshot));
  TRY(export_volume(*e, name));
  return volume_json(*e, TRY(p->volume(name)));
}

Result<Json> Storaged::vol_import(const Json& r) {
  PoolEntry* e = TRY(entry(r));
  Pool* p = TRY(pool(*e));
  std::string name = TRY(get_string(r, "name"));
  std::filesystem::path file = TRY(get_file(r));
  ImageFormat in_format = TRY(parse_image_format(get_optional(r, "source_format", "auto")));
  VolumeFormat format = TRY(parse_volume_format(get_optional(r, "format", "raw")));
  auto src = TRY_CTX(open_image(file, in_format, OpenMode::kReadOnly), "import {}", file.string());
  // Thin volumes are whole 4 KiB blocks.
  uint64_t size = (src->size() + 4095) / 4096 * 4096;
  TRY(p->create_volume(name, size, format));
  Rollback undo;
  undo.add([p, name] { (void)p->remove_volume(name); });
  auto dst = TRY(p->open_volume(name));
  uint64_t written = TRY_CTX(copy_device(*src, *dst), "import {}", file.string());
  dst.reset();
  TRY(export_volume(*e, name));
  undo.commit();
  Json j = volume_json(*e, TRY(p->volume(name)));
  j["copied"] = written;
  return j;
}

Result<Json> Storaged::vol_export(const Json& r) {
  PoolEntry* e = TRY(entry(r));
  Pool* p = TRY(pool(*e));
  std::string name = TRY(get_string(r, "name"));
  std::filesystem::path file = TRY(get_file(r));
  VolumeFormat format = TRY(parse_volume_format(get_optional(r, "format", "raw")));
  VolumeInfo info = TRY(p->volume(name));
  std::shared_ptr<BlockDevice> src;
  if (auto it = e->devices.find(name); it != e->devices.end()) {
    TRY(it->second->flush());
    src = it->second;
  } else {
    src = TRY(p->open_volume(name));
  }
  if (::access(file.c_str(), F_OK) == 0)
    return make_error(ErrorCode::kAlreadyExists, "{} exists", file.string());
  Rollback undo;
  if (format == VolumeFormat::kQcow2) {
    TRY(Qcow2::create(file, {.size = info.size}));
  } else {
    Fd fd(::open(file.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
    if (!fd) return errno_error("create " + file.string());
    if (::ftruncate(fd.get(), off_t(info.size)) != 0) return errno_error("resize " + file.string());
  }
  undo.add([file] { ::unlink(file.c_str()); });
  auto dst =
      TRY(open_image(file, format == VolumeFormat::kQcow2 ? ImageFormat::kQcow2 : ImageFormat::kRaw,
                     OpenMode::kReadWrite));
  uint64_t written = TRY_CTX(copy_device(*src, *dst), "export to {}", file.string());
  undo.commit();
  return Json{{"name", name},
              {"pool", e->config.name},
              {"file", file.string()},
              {"format", to_string(format)},
              {"copied", written}};
}

}  // namespace vireo::storage
