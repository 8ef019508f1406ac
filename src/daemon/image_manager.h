#pragma once
// What vireod's image routes share (images.cc, image_build.cc): the image store, opened on first
// use so that a broken images folder does not keep the daemon from serving everything else,
// the events and operations, and the JSON form of an image.
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "image/image_store.h"
#include "server/events.h"
#include "server/operations.h"

namespace vireo::daemon {

inline constexpr const char* kImagesPath = "/1.0/images";

class ImageManager {
 public:
  ImageManager(std::filesystem::path root, server::EventHub& events,
               server::OperationManager& operations)
      : root_(std::move(root)), events_(events), operations_(operations) {}

  Result<image::ImageStore*> store();
  // Publishes a lifecycle event about /1.0/images/<ref>.
  void lifecycle(const std::string& action, const std::string& ref);

  server::OperationManager& operations() { return operations_; }

  // The images that containers use (manifest digests): prune keeps them.
  void set_in_use(std::function<std::vector<Digest>()> in_use) {
    std::lock_guard lock(open_mutex_);
    in_use_ = std::move(in_use);
  }
  std::vector<Digest> in_use() {
    std::function<std::vector<Digest>()> f;
    {
      std::lock_guard lock(open_mutex_);
      f = in_use_;
    }
    return f ? f() : std::vector<Digest>{};
  }
  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
  server::EventHub& events_;
  server::OperationManager& operations_;
  std::mutex open_mutex_;
  std::unique_ptr<image::ImageStore> store_;
  std::function<std::vector<Digest>()> in_use_;
};

// The API form of an image; detail adds layers, config, diff_ids and process settings.
Json image_json(const image::ImageInfo& info, bool detail);

}  // namespace vireo::daemon
