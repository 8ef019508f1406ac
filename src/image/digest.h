#pragma once
// The image store names blobs by their digests: base/digest.h's Digest, Hasher and digest_of.
#include "base/digest.h"

namespace vireo::image {

using vireo::Digest;
using vireo::digest_of;
using vireo::DigestAlgorithm;
using vireo::Hasher;

}  // namespace vireo::image
