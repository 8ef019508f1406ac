#pragma once
// Runs OCI hooks: each gets the container state JSON on stdin, its own args and env, and is
// killed when its timeout passes. The first failing hook stops the list.
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "container/config.h"

namespace vireo::container {

[[nodiscard]] Result<void> run_hooks(const std::vector<Hook>& hooks, const Json& state,
                                     std::string_view phase);

}  // namespace vireo::container
