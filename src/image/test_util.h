#pragma once
// Test helpers of the image library: a temporary directory removed at the end of a test.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace vireo::image::testing {

class TempDir {
 public:
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "vireo-image-XXXXXX").string();
    path_ = ::mkdtemp(t.data());
  }
  ~TempDir() {
    // Unpacked layers can hold read-only directories: make them writable before removing.
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(path_, ec);
         it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
      if (it->is_directory(ec) && !it->is_symlink(ec)) ::chmod(it->path().c_str(), 0700);
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline bool is_root() {
  return ::geteuid() == 0;
}

}  // namespace vireo::image::testing
