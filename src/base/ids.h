#pragma once
// Random identifiers and digests.
#include <string>
#include <string_view>

namespace vireo {

// Lowercase hex of n bytes.
std::string to_hex(const unsigned char* p, size_t n);
// bytes random bytes from the OS CSPRNG, as lowercase hex (2*bytes characters).
std::string random_hex(size_t bytes);
// A version-4 UUID string.
std::string random_uuid();
// Lowercase hex SHA-256 of data.
std::string sha256_hex(std::string_view data);

}  // namespace vireo
