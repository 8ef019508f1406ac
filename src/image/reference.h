#pragma once
// Image references as users type them: NAME[:TAG][@DIGEST], e.g. "busybox", "busybox:1.36",
// "registry.example:5000/team/app:v2", "app@sha256:...". The tag defaults to "latest" (unless
// only a digest is given). Names are not rewritten (no implicit docker.io/library/ prefix).
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "image/digest.h"

namespace vireo::image {

struct Reference {
  std::string name;
  std::string tag;  // empty only when digest is set and no tag was given
  std::optional<Digest> digest;

  [[nodiscard]] static Result<Reference> parse(std::string_view text);
  // "name:tag" — the key of the tag store.
  std::string tagged() const { return name + ":" + tag; }
  std::string str() const;
};

}  // namespace vireo::image
