#pragma once
// Small string helpers shared by the CLI, the API validation and the libraries.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vireo {

std::vector<std::string> split(std::string_view s, char sep);
std::string_view trim(std::string_view s);

// "512M", "1.5G", "4096", "64KiB" → bytes (binary units). Errors name the bad text.
[[nodiscard]] Result<uint64_t> parse_size(std::string_view text);
// 1536 → "1.5 KiB"
std::string format_bytes(uint64_t bytes);

// For a URL's query or path segment: everything but RFC 3986's unreserved characters
// percent-encoded ("a b/c" → "a%20b%2Fc").
std::string percent_encode(std::string_view s);

// Names of user-made objects: 1-63 chars of [A-Za-z0-9_.-], starting with a letter or digit.
// The same rule everywhere so a name is safe as a path component, an interface suffix and a URL.
[[nodiscard]] Result<void> validate_name(std::string_view name, std::string_view what);

}  // namespace vireo
