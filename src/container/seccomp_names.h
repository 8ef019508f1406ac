#pragma once
// The seccomp names config.json uses (SCMP_ACT_*, SCMP_CMP_*, SCMP_ARCH_*) mapped to libseccomp
// values. Unknown names yield -1 / false so the parser can reject them.
#include <cstdint>
#include <optional>
#include <string_view>

namespace vireo::container {

// scmp_compare value, or -1.
int seccomp_operator(std::string_view name);
bool seccomp_action_known(std::string_view name);
// libseccomp action value for name; errno_ret is used by ERRNO and TRACE.
std::optional<uint32_t> seccomp_action(std::string_view name, std::optional<uint32_t> errno_ret);
bool seccomp_arch_known(std::string_view name);
// libseccomp architecture token for name, or 0.
uint32_t seccomp_arch(std::string_view name);

}  // namespace vireo::container
