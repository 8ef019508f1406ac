// VMs made from VM disk images (image/vm_disk.h): POST /1.0/vms/{name}/from-image with the VM's
// definition plus "image": REF, "pool": POOL (default "default") and "disk_size": SIZE. The
// checks that need no copy run first (the image is a VM disk image, the definition is valid, the
// pool exists and volume POOL/NAME-root does not), the row claims the name in status "creating",
// and an operation copies the image's disk blob into POOL/NAME-root through vireo-storaged's
// vol.import, grows it to disk_size and makes the VM ready. The definition is a normal one: its
// first disk is {"volume": "POOL/NAME-root"}. A failure removes the volume and the row.
#include <algorithm>

#include "base/file.h"
#include "base/log.h"
#include "base/rollback.h"
#include "base/strings.h"
#include "daemon/image_manager.h"
#include "daemon/vm_definition.h"
#include "daemon/vms.h"

namespace vireo::daemon {

namespace {

constexpr const char* kCollection = "vms";

// Written in the VM's run directory while its disk is copied: what a create interrupted by a
// crash must remove (abandon_from_image).
constexpr const char* kPendingFile = "from-image.json";

Result<uint64_t> disk_size_field(const Json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_string()) return with_context(parse_size(value.get<std::string>()), "disk_size");
  return make_error(ErrorCode::kInvalidArgument,
                    "field 'disk_size' must be a size such as \"10G\" or a number of bytes");
}

Result<std::string> string_or(const Json& body, const char* key, std::string fallback) {
  if (!body.contains(key)) return fallback;
  if (!body[key].is_string() || body[key].get<std::string>().empty())
    return make_error(ErrorCode::kInvalidArgument, "field '{}' must be a non-empty string", key);
  return body[key].get<std::string>();
}

}  // namespace

void VmManager::add_from_image_route(server::Router& router) {
  router.add_sync(
      server::Method::kPost, "/1.0/vms/{name}/from-image",
      [this](server::Request& req) -> Result<server::Response> {
        const std::string name = req.params["name"];
        TRY(validate_name(name, "vm"));
        Json body = TRY(req.json_body());
        if (!body.is_object())
          return make_error(ErrorCode::kInvalidArgument,
                            "body must be a VM definition with \"image\": REF");
        const std::string ref = TRY(string_or(body, "image", ""));
        if (ref.empty())
          return make_error(ErrorCode::kInvalidArgument, "field 'image' is required (a string)");
        const std::string pool = TRY(string_or(body, "pool", "default"));
        const uint64_t disk_size =
            body.contains("disk_size") ? TRY(disk_size_field(body["disk_size"])) : 0;
        for (const char* key : {"image", "pool", "disk_size", "name"}) body.erase(key);

        if (!images_)
          return make_error(ErrorCode::kUnavailable, "the image store is not available");
        image::ImageInfo info = TRY(TRY(images_->store())->show(ref));
        if (info.kind != image::ImageKind::kVm)
          return make_error(ErrorCode::kInvalidArgument,
                            "image {} is a container image, not a VM disk image (import a qcow2 "
                            "or raw disk with vireo image import)",
                            ref);
        if (disk_size != 0 && disk_size < info.vm->virtual_size)
          return make_error(ErrorCode::kInvalidArgument,
                            "disk size {} is smaller than image {}'s disk ({})",
                            format_bytes(disk_size), ref, format_bytes(info.vm->virtual_size));

        const std::string volume = name + "-root";
        TRY_CTX(validate_name(volume, "volume"), "the VM's root volume");
        Json disks = Json::array({Json{{"volume", pool + "/" + volume}}});
        if (body.contains("disks") && body["disks"].is_array())
          for (const auto& d : body["disks"]) disks.push_back(d);
        body["disks"] = disks;
        Json spec = TRY(validate_vm(body));

        if (store_.get_object(kCollection, name))
          return make_error(ErrorCode::kAlreadyExists, "vm '{}' already exists", name);
        if (!storage_) return make_error(ErrorCode::kUnavailable, "storage is not available");
        if (auto p = storaged_call({{"op", "pool.show"}, {"name", pool}}); !p) {
          if (p.error().code() == ErrorCode::kNotFound)
            return make_error(ErrorCode::kNotFound, "pool {} not found", pool);
          return std::unexpected(std::move(p.error()));
        }
        if (storage_->show_volume(pool, volume))
          return make_error(ErrorCode::kAlreadyExists,
                            "volume {}/{} already exists: remove it or name the VM differently",
                            pool, volume);
        auto claimed = store_.insert_object(kCollection, name, spec, "creating");
        if (!claimed) {
          if (claimed.error().code() == ErrorCode::kAlreadyExists)
            return make_error(ErrorCode::kAlreadyExists, "vm '{}' already exists", name);
          return std::unexpected(std::move(claimed.error()));
        }
        auto op = operations_.start(
            fmt::format("Creating vm {} from image {}", name, ref),
            Json{{"vms", {"/1.0/vms/" + name}}, {"images", {std::string(kImagesPath) + "/" + ref}}},
            server::Cancellable::kNo,
            [this, row = *claimed, ref, pool, disk_size](server::OperationContext& ctx) {
              return create_from_image(row, ref, pool, disk_size, ctx);
            });
        return server::accepted(op);
      });
}

Result<Json> VmManager::create_from_image(const store::ObjectRow& row, const std::string& ref,
                                          const std::string& pool, uint64_t disk_size,
                                          server::OperationContext& ctx) {
  const std::string volume = row.name + "-root";
  Rollback undo;
  undo.add([this, name = row.name] { (void)store_.delete_object(kCollection, name); });
  TRY(make_dirs(run_dir(row.name), 0700));
  TRY(write_file_atomic(run_dir(row.name) / kPendingFile,
                        Json{{"pool", pool}, {"volume", volume}}.dump(), 0600));
  undo.add([this, name = row.name] {
    std::error_code ec;
    std::filesystem::remove_all(run_dir(name), ec);
  });
  auto* store = TRY(images_->store());
  // Held while vireo-storaged reads the blob: a prune meanwhile is refused, not half-done.
  auto work = store->begin_work();
  ctx.set_progress(0, "verifying the image's disk");
  image::VmDiskBlob disk = TRY(store->vm_disk(ref));
  ctx.set_progress(10, "copying the disk into volume " + pool + "/" + volume);
  Json imported =
      TRY_CTX(storaged_call({{"op", "vol.import"},
                             {"pool", pool},
                             {"name", volume},
                             {"file", disk.file.string()},
                             {"source_format", std::string(image::to_string(disk.format))}}),
              "make volume {}/{} from image {}", pool, volume, ref);
  undo.add([this, pool, volume] {
    (void)storaged_call({{"op", "vol.rm"}, {"pool", pool}, {"name", volume}});
  });
  if (disk_size > imported.value("size", uint64_t{0}))
    TRY_CTX(storaged_call(
                {{"op", "vol.resize"}, {"pool", pool}, {"name", volume}, {"size", disk_size}}),
            "grow volume {}/{} to {}", pool, volume, format_bytes(disk_size));
  ctx.set_progress(90, "defining the VM");
  TRY(check_resolves(row));
  TRY(store_.update_object(kCollection, row.name, row.spec, "ready", row.revision));
  undo.commit();
  std::error_code ec;
  std::filesystem::remove(run_dir(row.name) / kPendingFile, ec);
  storage_->volume_created(pool, volume);
  lifecycle(row.name, "created");
  return Json{{"name", row.name},
              {"image", ref},
              {"volume", pool + "/" + volume},
              {"format", std::string(image::to_string(disk.format))},
              {"size", std::max(disk_size, imported.value("size", uint64_t{0}))}};
}

// A create from an image that a crash interrupted (its row still "creating"): the volume it was
// copying goes, if vireo-storaged answers (it outlives vireod, so it usually does).
void VmManager::abandon_from_image(const store::ObjectRow& row) {
  auto text = read_file(run_dir(row.name) / kPendingFile);
  if (!text) return;  // not a create from an image
  auto pending = parse_json(*text);
  if (pending && pending->is_object()) {
    auto gone = storaged_call({{"op", "vol.rm"},
                               {"pool", pending->value("pool", "")},
                               {"name", pending->value("volume", "")}});
    if (!gone)
      spdlog::warn("vm {}: remove the volume of its interrupted create: {}", row.name,
                   gone.error().message());
  }
  std::error_code ec;
  std::filesystem::remove_all(run_dir(row.name), ec);
}

}  // namespace vireo::daemon
