#include "daemon/image_manager.h"

#include "api/event.h"

namespace vireo::daemon {

Result<image::ImageStore*> ImageManager::store() {
  std::lock_guard lock(open_mutex_);
  if (!store_) store_ = TRY_CTX(image::ImageStore::create(root_), "image store");
  return store_.get();
}

void ImageManager::lifecycle(const std::string& action, const std::string& ref) {
  events_.publish("lifecycle",
                  api::lifecycle_metadata(action, std::string(kImagesPath) + "/" + ref));
}

namespace {

Json descriptor_json(const image::Descriptor& d) {
  return {{"digest", d.digest.str()}, {"size", d.size}, {"media_type", d.media_type}};
}

}  // namespace

Json image_json(const image::ImageInfo& info, bool detail) {
  Json j = {{"name", info.tags.empty() ? "" : info.tags.front()},
            {"tags", info.tags},
            {"digest", info.manifest_digest.str()},
            {"size", info.size},
            {"layers", info.manifest.layers.size()},
            {"os", info.config.os},
            {"architecture", info.config.architecture},
            {"type", info.kind == image::ImageKind::kVm ? "vm" : "container"}};
  if (info.vm)
    j["disk"] = {{"format", std::string(image::to_string(info.vm->format))},
                 {"virtual_size", info.vm->virtual_size}};
  const Json& raw = info.config.raw;
  if (raw.is_object() && raw.contains("created") && raw["created"].is_string())
    j["created"] = raw["created"];
  if (!detail) return j;
  j["layers"] = Json::array();
  for (const auto& layer : info.manifest.layers) j["layers"].push_back(descriptor_json(layer));
  j["config"] = descriptor_json(info.manifest.config);
  j["manifest_media_type"] = info.manifest.media_type;
  if (info.kind == image::ImageKind::kVm) return j;  // no diff_ids, no process
  Json diff_ids = Json::array();
  for (const auto& d : info.config.diff_ids) diff_ids.push_back(d.str());
  j["diff_ids"] = diff_ids;
  j["process"] = {{"entrypoint", info.config.entrypoint},
                  {"cmd", info.config.cmd},
                  {"env", info.config.env},
                  {"working_dir", info.config.working_dir},
                  {"user", info.config.user}};
  return j;
}

}  // namespace vireo::daemon
