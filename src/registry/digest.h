#pragma once
// Digests as the distribution spec parses them: its DIGEST_INVALID / UNSUPPORTED error codes.
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/digest.h"
#include "registry/errors.h"

namespace vireo::registry {

// Digests and hashing are base/digest.h's; the registry adds the spec's error codes.
using Algorithm = DigestAlgorithm;
using vireo::Digest;
using vireo::digest_of;
using vireo::digest_of_file;
using vireo::Hasher;

// Validates "alg:hex"; DIGEST_INVALID (or UNSUPPORTED for an unknown algorithm) names the fault.
RegResult<Digest> parse_digest(std::string_view text);
// True when text has the shape of a digest (algorithm ":" encoded) rather than of a tag.
bool looks_like_digest(std::string_view text);

}  // namespace vireo::registry
