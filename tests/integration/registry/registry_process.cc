#include "registry_process.h"

#include <cstdlib>

namespace vireo::registry::testing {

namespace {

std::vector<std::string> registry_args(const fs::path& root,
                                       const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"--root", root.string(), "--listen", "127.0.0.1:0"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

}  // namespace

RegistryProcess::RegistryProcess(const fs::path& root, const std::vector<std::string>& extra)
    : ReadyProcess("vireo-registry", registry_args(root, extra)) {
  auto colon = ready_line().rfind(':');
  if (ReadyProcess::ready() && colon != std::string::npos)
    port_ = uint16_t(std::atoi(ready_line().c_str() + colon + 1));
}

}  // namespace vireo::registry::testing
