#pragma once
// The layer cache of `vireo image build` (internal to vireo_image_build), see builder.h:
// <store root>/build-cache/<key>.json naming a layer blob, used only while the blob is there.
#include <filesystem>
#include <optional>
#include <string>

#include "base/file.h"
#include "base/json.h"
#include "image/image_store.h"
#include "image/manifest.h"

namespace vireo::image::build {

struct CacheEntry {
  Descriptor layer;
  Digest diff_id;
};

class Cache {
 public:
  Cache(ImageStore& store, bool enabled)
      : store_(store), dir_(store.root() / "build-cache"), enabled_(enabled) {}

  // Drops the entries whose blobs are gone (pruned).
  void sweep() {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
      auto hex = e.path().stem().string();
      if (e.path().extension() == ".json" && !load(hex)) ::unlink(e.path().c_str());
    }
  }

  std::optional<CacheEntry> get(const std::string& key) {
    if (!enabled_) return std::nullopt;
    auto entry = load(key);
    if (!entry) ::unlink(file_of(key).c_str());
    return entry;
  }

  void put(const std::string& key, const CacheEntry& e) {
    if (!make_dirs(dir_, 0700)) return;
    Json j = {{"layer", e.layer.to_json()}, {"diff_id", e.diff_id.str()}};
    (void)write_file_atomic(file_of(key), j.dump() + "\n", 0600);
  }

 private:
  std::filesystem::path file_of(const std::string& key) const { return dir_ / (key + ".json"); }

  std::optional<CacheEntry> load(const std::string& key) {
    auto text = read_file(file_of(key));
    if (!text) return std::nullopt;
    auto j = parse_untrusted_json(*text);
    if (!j || !j->is_object() || !j->contains("layer") || !j->contains("diff_id"))
      return std::nullopt;
    auto layer = parse_descriptor((*j)["layer"]);
    auto diff_id = (*j)["diff_id"].is_string()
                       ? Digest::parse((*j)["diff_id"].get<std::string>())
                       : Result<Digest>(make_error(ErrorCode::kInvalidArgument, "diff_id"));
    if (!layer || !diff_id) return std::nullopt;
    // Only while the blob is there: prune may have removed it.
    auto size = store_.blobs().size_of(layer->digest);
    if (!size || *size != layer->size) return std::nullopt;
    return CacheEntry{*layer, *diff_id};
  }

  ImageStore& store_;
  std::filesystem::path dir_;
  bool enabled_;
};

}  // namespace vireo::image::build
