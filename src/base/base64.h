#pragma once
// Base64 (RFC 4648), standard and URL-safe alphabets, on OpenSSL's block coder: HTTP Basic
// credentials, JWT parts, x5c certificates.
#include <optional>
#include <string>
#include <string_view>

namespace vireo {

std::string base64_encode(std::string_view data);
// Padded standard base64; nullopt when it is not (or longer than max_input).
std::optional<std::string> base64_decode(std::string_view text, size_t max_input = 1 << 20);
// The URL-safe alphabet without padding (JWS).
std::string base64url_encode(std::string_view data);
std::optional<std::string> base64url_decode(std::string_view text, size_t max_input = 1 << 20);

}  // namespace vireo
