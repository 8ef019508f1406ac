#pragma once
// Validation of repository names and tags against the distribution spec's grammar, written out by
// hand (no backtracking regex on client input).
#include <string_view>

#include "registry/errors.h"

namespace vireo::registry {

// [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*, at most 255 bytes.
RegResult<void> validate_name(std::string_view name);
// [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
RegResult<void> validate_tag(std::string_view tag);

}  // namespace vireo::registry
