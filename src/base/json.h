#pragma once
// JSON helpers around nlohmann::json: parsing that yields an Error (never throws) and names the
// position of a syntax error, and typed field access for validating API bodies.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace vireo {

using Json = nlohmann::json;

// Parses text; a syntax error becomes kInvalidArgument "invalid JSON at byte N: <parser message>".
[[nodiscard]] Result<Json> parse_json(std::string_view text);

// RFC 7386 JSON merge patch applied to target.
void merge_patch(Json& target, const Json& patch);

// The string member key of j: kInvalidArgument "missing field 'key'" when required and absent
// ("" when optional and absent), "'key' must be a string" when of another type.
[[nodiscard]] Result<std::string> get_string(const Json& j, const char* key, bool required = true);

// Serializes without throwing on invalid UTF-8 (replaced), for text that came from outside.
std::string dump_json(const Json& j, int indent = -1);

}  // namespace vireo
