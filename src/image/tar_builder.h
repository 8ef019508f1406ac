#pragma once
// TarBuilder (tests and fuzz seeds): writes hand-made tar archives with libarchive, including
// the hostile ones real tools refuse to make (absolute names, "..", links out of the tree).
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "image/digest.h"

namespace vireo::image::testing {

enum class Compression { kNone, kGzip, kZstd };

class TarBuilder {
 public:
  TarBuilder& file(std::string path, std::string content, int mode = 0644);
  TarBuilder& dir(std::string path, int mode = 0755);
  TarBuilder& symlink(std::string path, std::string target);
  TarBuilder& hardlink(std::string path, std::string target);
  TarBuilder& device(std::string path, int type, unsigned major, unsigned minor);
  TarBuilder& xattr(std::string name, std::string value);  // for the next entry
  TarBuilder& mtime(long seconds);                         // for the following entries
  // The archive bytes (pax format).
  std::string build(Compression c = Compression::kNone) const;

 private:
  struct Entry {
    std::string path;
    int type = S_IFREG;
    int mode = 0644;
    std::string content;
    std::string link;
    bool hard = false;
    unsigned major = 0, minor = 0;
    long mtime = 0;
    std::vector<std::pair<std::string, std::string>> xattrs;
  };
  Entry& add(std::string path, int type, int mode);

  std::vector<Entry> entries_;
  std::vector<std::pair<std::string, std::string>> pending_xattrs_;
  long mtime_ = 1700000000;
};

// Writes content to p, making its parent directories.
void write_test_file(const std::filesystem::path& p, const std::string& content);

// Writes an OCI image layout in dir with one image of these layer blobs (gzip media type; the
// content is whatever the strings hold) and this image config "config" object, its index entry
// annotated with tag. Returns the manifest's digest.
Digest write_layout(const std::filesystem::path& dir, const std::vector<std::string>& layers,
                    Json image_config = {}, const std::string& tag = "latest");

}  // namespace vireo::image::testing
