#pragma once
// What vireod's image routes share (images.cc, image_build.cc): the image store, opened on first
// use so that a broken images folder does not keep the daemon from serving everything else,
// the events and operations, and the JSON form of an image.
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

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
  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
  server::EventHub& events_;
  server::OperationManager& operations_;
  std::mutex open_mutex_;
  std::unique_ptr<image::ImageStore> store_;
};

// The API form of an image; detail adds layers, config, diff_ids and process settings.
Json image_json(const image::ImageInfo& info, bool detail);

}  // namespace vireo::daemon
