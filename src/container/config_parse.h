#pragma once
// Internal to the config parser: the pieces config.cc and config_linux.cc share, and the
// process parser that `exec --process` reuses.
#include <string>
#include <vector>

#include "container/config.h"
#include "container/json_fields.h"

namespace vireo::container {

[[nodiscard]] Result<Process> parse_process(const JsonFields& f, const Json& j,
                                            const std::string& path,
                                            std::vector<std::string>* warnings);
[[nodiscard]] Result<Linux> parse_linux(const JsonFields& f, const Json& j,
                                        std::vector<std::string>* warnings);
[[nodiscard]] Result<Resources> parse_resources(const JsonFields& f, const Json& j,
                                                const std::string& path);
[[nodiscard]] Result<Seccomp> parse_seccomp(const JsonFields& f, const Json& j,
                                            const std::string& path);
// Rules that span sections (uid mappings need a user namespace, ...).
[[nodiscard]] Result<void> check_consistency(const JsonFields& f, const Config& c);

}  // namespace vireo::container
