#pragma once
// Test fixture of the image library: image stores under a temporary directory.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "image/image_store.h"
#include "image/test_util.h"

namespace vireo::image::testing {

class StoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<ImageStore> open_store(const std::string& name, bool privileged = false) {
    auto s = ImageStore::create(tmp_.path() / name, {.privileged = privileged});
    EXPECT_TRUE(s) << s.error().message();
    return std::move(*s);
  }
  std::filesystem::path path(const std::string& name) { return tmp_.path() / name; }

  TempDir tmp_;
};

}  // namespace vireo::image::testing
