#pragma once
// `vireo image pull` and `vireo image push`: images between the store and a registry over the
// distribution protocol (OCI and Docker v2 schema 2 manifests, image indexes resolved to a
// platform, gzip/zstd/uncompressed layers). Blobs move in parallel; each is verified against
// its digest as it arrives. A pulled layer is unpacked as soon as it is stored, while the other
// blobs still download. An interrupted download is resumed with an HTTP Range request, within
// one pull and by the next pull of the same blob (partial files under <store>/tmp/pull/).
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "image/image_store.h"
#include "image/remote/session.h"

namespace vireo::image::remote {

struct TransferProgress {
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0;  // of the blobs that have to move
  int blobs_done = 0;
  int blobs_total = 0;
  std::string stage;  // "resolving", "downloading", "unpacking", "uploading", "committing"
};
// Called from any worker thread, serialized, at most every 100 ms and at each blob's end.
using ProgressFn = std::function<void(const TransferProgress&)>;

struct TransferOptions {
  SessionOptions session;
  int parallel = 3;                 // blobs at once
  std::function<bool()> cancelled;  // polled while data moves; kCancelled when it says so
  ProgressFn progress;
};

struct PullOptions : TransferOptions {
  std::string os = "linux";
  std::string architecture = "amd64";
  // The local NAME[:TAG]; default: the reference as given (a reference by digest alone is
  // stored as NAME:digest-<first 12 hex digits>).
  std::string local_ref;
};

[[nodiscard]] Result<ImageInfo> pull(ImageStore& store, std::string_view ref,
                                     const PullOptions& options);

struct PushResult {
  std::string destination;  // registry/repository:tag
  Digest manifest_digest;
  uint64_t bytes_sent = 0;
  int blobs_sent = 0;
  int blobs_present = 0;  // already on the registry
};

// Pushes local_ref to destination (default: local_ref itself, which must then name a registry).
[[nodiscard]] Result<PushResult> push(ImageStore& store, std::string_view local_ref,
                                      std::string_view destination, const TransferOptions& options);

}  // namespace vireo::image::remote
