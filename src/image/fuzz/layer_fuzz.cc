// Fuzz target: a layer blob (tar, gzip or zstd) unpacked into a scratch directory, as a layer
// and as a plain archive, plus its diff_id. Unprivileged, so no device node is ever made.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>

#include "base/fd.h"
#include "base/log.h"
#include "image/layer_unpack.h"
#include "image/tar_builder.h"
#include "image/tree.h"
#include "storage/fuzz/fuzz.h"

using namespace vireo;
using namespace vireo::image;

namespace {

ReadFn source_of(const uint8_t* data, size_t size, size_t& pos) {
  return [data, size, &pos](void* buf, size_t len) -> Result<size_t> {
    size_t n = std::min(len, size - pos);
    if (n > 0) std::memcpy(buf, data + pos, n);
    pos += n;
    return n;
  };
}

std::string scratch;

void unpack_once(const uint8_t* data, size_t size, UnpackMode mode) {
  if (scratch.empty()) {
    std::string t = (std::filesystem::temp_directory_path() / "image-fuzz-XXXXXX").string();
    if (!::mkdtemp(t.data())) std::abort();
    scratch = t;
    std::atexit([] { (void)remove_tree(scratch); });
  }
  std::string dir = scratch + "/d";
  (void)remove_tree(dir);
  if (::mkdir(dir.c_str(), 0700) != 0) std::abort();
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  size_t pos = 0;
  (void)unpack_tar(source_of(data, size, pos), fd.get(), {.mode = mode, .privileged = false});
  fd.reset();
  (void)remove_tree(dir);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = (spdlog::set_level(spdlog::level::off), true);
  (void)quiet;
  unpack_once(data, size, UnpackMode::kLayer);
  unpack_once(data, size, UnpackMode::kArchive);
  size_t pos = 0;
  (void)tar_diff_id(source_of(data, size, pos));
  return 0;
}

std::vector<std::string> vireo_fuzz_seeds() {
  using testing::Compression;
  using testing::TarBuilder;
  TarBuilder normal = TarBuilder()
                          .dir("etc")
                          .file("etc/hosts", "127.0.0.1 localhost\n")
                          .symlink("link", "/etc")
                          .hardlink("etc/hosts2", "etc/hosts")
                          .file("etc/.wh.gone", "")
                          .file("d/.wh..wh..opq", "")
                          .xattr("user.x", "y")
                          .file("x", std::string(3000, 'x'), 0755);
  return {normal.build(), normal.build(Compression::kGzip), normal.build(Compression::kZstd),
          TarBuilder().symlink("evil", "/tmp").file("evil/x", "x").build(),
          TarBuilder().hardlink("h", "../../x").file("../y", "y").build()};
}
