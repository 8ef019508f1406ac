#pragma once
// An overlayfs upper directory (what one build step changed) as an OCI layer: a gzip-compressed
// tar stored in the image store's blobs. overlayfs's deletion markers become OCI whiteouts: a
// 0/0 character device NAME becomes an empty ".wh.NAME", a directory with
// trusted.overlay.opaque=y gets a ".wh..wh..opq" entry. overlayfs's other trusted.overlay.*
// attributes are dropped; a redirect or metacopy attribute (a mount with redirect_dir or
// metacopy on) is an error since the directory then does not hold the whole change.
//
// The upper directory is only read, fd-relative and never through a symlink. Stateless;
// thread-safe.
#include <filesystem>

#include "base/result.h"
#include "image/blob_store.h"

namespace vireo::image::build {

struct LayerBlob {
  BlobInfo blob;   // the compressed tar, in the blob store
  Digest diff_id;  // sha256 of the uncompressed tar
};

// Writes the tar of upper through a temporary file in scratch_dir into blobs.
[[nodiscard]] Result<LayerBlob> write_layer(const std::filesystem::path& upper, BlobStore& blobs,
                                            const std::filesystem::path& scratch_dir);

}  // namespace vireo::image::build
