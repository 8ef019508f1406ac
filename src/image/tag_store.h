#pragma once
// TagStore: <root>/images.json, the map "name:tag" → manifest digest. Every change rewrites the
// file atomically (temporary file, fsync, rename), so a crash leaves the old or the new map.
// Not thread-safe: ImageStore serializes its calls.
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "base/result.h"
#include "image/digest.h"

namespace vireo::image {

class TagStore {
 public:
  // Loads images.json (an absent file is an empty map; a corrupt one is an error).
  [[nodiscard]] static Result<TagStore> load(const std::filesystem::path& root);

  std::optional<Digest> get(const std::string& tagged) const;
  const std::map<std::string, Digest>& all() const { return tags_; }
  [[nodiscard]] Result<void> set(const std::string& tagged, const Digest& manifest);
  // kNotFound when the tag is not there.
  [[nodiscard]] Result<void> remove(const std::string& tagged);

 private:
  [[nodiscard]] Result<void> save() const;

  std::filesystem::path file_;
  std::map<std::string, Digest> tags_;
};

}  // namespace vireo::image
