#pragma once
// Turns a config.json mount's option strings into mount(2) flags, propagation changes,
// mount_setattr(2) recursive attributes and the filesystem data string. Pure; unit-tested.
#include <string>
#include <vector>

#include "base/result.h"

namespace vireo::container {

struct MountOptions {
  unsigned long flags = 0;                 // MS_* except propagation
  std::vector<unsigned long> propagation;  // MS_SHARED, MS_PRIVATE, ... each applied in order
  unsigned long long attr_set = 0;         // MOUNT_ATTR_* for recursive (r*) options
  unsigned long long attr_clr = 0;
  std::string data;  // filesystem-specific options, comma separated
  bool bind() const;
  bool recursive_bind() const;
};

// Unknown options are passed to the filesystem in data, which is what mount(8) does too.
[[nodiscard]] Result<MountOptions> parse_mount_options(const std::vector<std::string>& options);

// Flags a bind mount must re-apply with MS_REMOUNT (bind ignores them on the first call).
unsigned long remount_flags(unsigned long flags);

}  // namespace vireo::container
