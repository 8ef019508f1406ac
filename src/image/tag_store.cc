#include "image/tag_store.h"

#include "base/file.h"
#include "base/json.h"
#include "image/manifest.h"

namespace vireo::image {

Result<TagStore> TagStore::load(const std::filesystem::path& root) {
  TagStore store;
  store.file_ = root / "images.json";
  std::error_code ec;
  if (!std::filesystem::exists(store.file_, ec)) return store;
  std::string text = TRY(read_file(store.file_));
  Json j = TRY_CTX(parse_untrusted_json(text), "{}", store.file_.string());
  auto tags = j.find("tags");
  if (!j.is_object() || tags == j.end() || !tags->is_object())
    return make_error(ErrorCode::kInvalidArgument, "{}: missing 'tags' object",
                      store.file_.string());
  for (const auto& [k, v] : tags->items()) {
    if (!v.is_string())
      return make_error(ErrorCode::kInvalidArgument, "{}: tag '{}' is not a digest string",
                        store.file_.string(), k);
    store.tags_[k] =
        TRY_CTX(Digest::parse(v.get<std::string>()), "{}: tag '{}'", store.file_.string(), k);
  }
  return store;
}

std::optional<Digest> TagStore::get(const std::string& tagged) const {
  auto it = tags_.find(tagged);
  if (it == tags_.end()) return std::nullopt;
  return it->second;
}

Result<void> TagStore::set(const std::string& tagged, const Digest& manifest) {
  auto old = tags_;
  tags_[tagged] = manifest;
  if (auto r = save(); !r) {
    tags_ = std::move(old);
    return r;
  }
  return {};
}

Result<void> TagStore::remove(const std::string& tagged) {
  auto it = tags_.find(tagged);
  if (it == tags_.end()) return make_error(ErrorCode::kNotFound, "image {} not found", tagged);
  Digest old = it->second;
  tags_.erase(it);
  if (auto r = save(); !r) {
    tags_[tagged] = old;
    return r;
  }
  return {};
}

Result<void> TagStore::save() const {
  Json tags = Json::object();
  for (const auto& [k, v] : tags_) tags[k] = v.str();
  Json j = {{"version", 1}, {"tags", tags}};
  return write_file_atomic(file_, j.dump(2) + "\n", 0600);
}

}  // namespace vireo::image
