#pragma once
// Secure extraction of a tar stream (uncompressed, gzip or zstd — detected from the content)
// into a directory, as layers and image archives need it.
//
// Every entry is created relative to the destination's directory fd: parents are opened with
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS), leaves created with
// O_CREAT|O_EXCL|O_NOFOLLOW, mkdirat, symlinkat, linkat (never following), mknodat. Hostile
// entries — an absolute path, a ".." component, a hard link to something not in this archive,
// a path that goes through a symlink (one the archive planted itself) — fail the whole unpack
// with an error naming the entry; the caller removes the partial tree. Symlinks are created as
// they are and never followed. Ownership and device nodes need root (privileged); without it
// they are skipped, and whiteouts and opaque directories are reported in the summary instead of
// being made as overlayfs expects (0/0 character devices, trusted.overlay.opaque=y).
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "base/result.h"
#include "image/digest.h"

namespace vireo::image {

// Reads up to len bytes; 0 at the end of the stream.
using ReadFn = std::function<Result<size_t>(void* buf, size_t len)>;

enum class UnpackMode {
  kLayer,    // OCI layer: ".wh." entries are whiteouts and opaque markers
  kArchive,  // plain archive (an OCI layout or docker save tarball): names taken literally
};

// Decompression bombs: a few MB of gzip can expand to terabytes or to millions of entries.
inline constexpr uint64_t kDiskReserve = uint64_t{1} << 30;
inline constexpr uint64_t kMaxEntries = 1'000'000;

struct UnpackOptions {
  UnpackMode mode = UnpackMode::kLayer;
  bool privileged = ::geteuid() == 0;  // chown, device nodes, whiteout devices, trusted xattrs
  // File data written at most (kTooLarge past it); 0: the free space of the destination's file
  // system when the unpack starts, less kDiskReserve.
  uint64_t max_bytes = 0;
  uint64_t max_entries = kMaxEntries;
};

struct UnpackSummary {
  Digest diff_id;         // sha256 of the uncompressed tar stream
  uint64_t tar_size = 0;  // bytes of the uncompressed tar stream
  uint64_t entries = 0;
  uint64_t skipped = 0;  // device nodes and sockets not created (unprivileged)
  // Unprivileged only: whiteouts ("dir/name") and opaque directories ("dir", "." for the root)
  // that could not be made as overlayfs markers.
  std::vector<std::string> whiteouts;
  std::vector<std::string> opaque_dirs;
};

[[nodiscard]] Result<UnpackSummary> unpack_tar(const ReadFn& source, int dest_dir_fd,
                                               const UnpackOptions& options);
[[nodiscard]] Result<UnpackSummary> unpack_tar_file(const std::filesystem::path& tar,
                                                    int dest_dir_fd, const UnpackOptions& options);

// The sha256 of the uncompressed tar stream (decompressing gzip/zstd), without extracting.
[[nodiscard]] Result<Digest> tar_diff_id(const ReadFn& source);

}  // namespace vireo::image
