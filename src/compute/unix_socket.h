#pragma once
// Connecting to the unix sockets QEMU listens on (QMP, serial console).
#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace vireo::compute {

// A connected SOCK_STREAM socket (close-on-exec). ENOENT/ECONNREFUSED mean nobody listens yet.
[[nodiscard]] Result<Fd> connect_unix(const std::string& path);

}  // namespace vireo::compute
