#pragma once
// The little JSON the monitor writes and reads, without a JSON library (the monitor binary must
// stay small): string escaping that always yields valid UTF-8, RFC 3339 timestamps with
// nanoseconds, and reading one string field out of a flat object.
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

namespace vireo::monitor {

// Appends text as the inside of a JSON string: '"', '\\' and control characters escaped
// (\n, \t, ... or \u00XX), bytes that are not valid UTF-8 replaced by U+FFFD, one per byte,
// as Go's encoding/json does.
void append_json_escaped(std::string& out, std::string_view text);

// Appends t as RFC 3339 in UTC with nine fractional digits: 2026-11-28T01:38:12.000123456Z.
void append_rfc3339_nano(std::string& out, const timespec& t);
std::string rfc3339_nano(const timespec& t);
timespec now_realtime();

// The value of the string field `key` of a flat JSON object (the first one found), unescaped
// (\uXXXX outside ASCII is kept as written). Nothing when there is no such string field.
std::optional<std::string> find_json_string(std::string_view json, std::string_view key);

}  // namespace vireo::monitor
