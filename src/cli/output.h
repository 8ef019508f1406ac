#pragma once
// How the CLI prints results: a table for people, JSON or YAML for scripts.
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace vireo::cli {

enum class Format { kTable, kJson, kYaml };

Result<Format> parse_format(const std::string& name);

// YAML block style for any JSON value; strings are quoted only when YAML would misread them.
std::string to_yaml(const Json& value);

// Columns aligned with two spaces between them; the first row is the header.
std::string render_table(const std::vector<std::vector<std::string>>& rows);

// A JSON scalar as plain text ("" for null; objects and arrays as compact JSON).
std::string plain(const Json& value);

// Prints a value in the chosen format; table_rows is used for kTable.
void print(Format format, const Json& value,
           const std::vector<std::vector<std::string>>& table_rows);

}  // namespace vireo::cli
