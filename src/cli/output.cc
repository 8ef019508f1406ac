#include "cli/output.h"

#include <cstdio>
#include <iostream>

namespace vireo::cli {

Result<Format> parse_format(const std::string& name) {
  if (name == "table") return Format::kTable;
  if (name == "json") return Format::kJson;
  if (name == "yaml") return Format::kYaml;
  return make_error(ErrorCode::kInvalidArgument, "unknown format '{}' (use table, json or yaml)",
                    name);
}

namespace {

bool needs_quotes(const std::string& s) {
  if (s.empty()) return true;
  static const char* kReserved[] = {"true", "false", "yes", "no", "on", "off", "null", "~",
                                    "True", "False", "Yes", "No", "On", "Off", "Null", "NULL"};
  for (const char* r : kReserved)
    if (s == r) return true;
  if (std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '-' || s[0] == '.' || s[0] == '+')
    return true;
  if (std::isspace(static_cast<unsigned char>(s.front())) ||
      std::isspace(static_cast<unsigned char>(s.back())))
    return true;
  for (char c : s) {
    if (std::string_view(":#{}[],&*!|>'\"%@`\n\t\\").find(c) != std::string_view::npos) return true;
    if (static_cast<unsigned char>(c) < 0x20) return true;
  }
  return false;
}

std::string scalar(const Json& v) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    return needs_quotes(s) ? dump_json(v) : s;  // a JSON string is a valid YAML double-quoted one
  }
  if (v.is_null()) return "null";
  return dump_json(v);
}

void emit(const Json& v, int indent, std::string& out) {
  const std::string pad(static_cast<size_t>(indent), ' ');
  if (v.is_object()) {
    for (const auto& [key, child] : v.items()) {
      std::string k = needs_quotes(key) ? dump_json(Json(key)) : key;
      if ((child.is_object() || child.is_array()) && !child.empty()) {
        out += pad + k + ":\n";
        emit(child, child.is_array() ? indent : indent + 2, out);
      } else {
        out += pad + k + ": " +
               (child.is_object()  ? "{}"
                : child.is_array() ? "[]"
                                   : scalar(child)) +
               "\n";
      }
    }
    return;
  }
  if (v.is_array()) {
    for (const auto& child : v) {
      if ((child.is_object() || child.is_array()) && !child.empty()) {
        std::string nested;
        emit(child, indent + 2, nested);
        // "- " takes the place of the first line's indentation.
        out += pad + "- " + nested.substr(static_cast<size_t>(indent + 2));
      } else {
        out += pad + "- " +
               (child.is_object()  ? "{}"
                : child.is_array() ? "[]"
                                   : scalar(child)) +
               "\n";
      }
    }
    return;
  }
  out += pad + scalar(v) + "\n";
}

}  // namespace

std::string to_yaml(const Json& value) {
  std::string out;
  if ((value.is_object() || value.is_array()) && value.empty())
    return value.is_object() ? "{}\n" : "[]\n";
  emit(value, 0, out);
  return out;
}

std::string render_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size());
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string plain(const Json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_null()) return "";
  return dump_json(value);
}

void print(Format format, const Json& value,
           const std::vector<std::vector<std::string>>& table_rows) {
  switch (format) {
    case Format::kJson:
      std::cout << dump_json(value, 2) << "\n";
      break;
    case Format::kYaml:
      std::cout << to_yaml(value);
      break;
    case Format::kTable:
      std::cout << render_table(table_rows);
      break;
  }
}

}  // namespace vireo::cli
