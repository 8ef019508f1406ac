#include "registry/names.h"

#include <string>

namespace vireo::registry {

namespace {

bool is_alnum_lower(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

// One path component: alphanumeric runs joined by ".", "_", "__" or one or more "-".
bool valid_component(std::string_view s) {
  size_t i = 0;
  for (;;) {
    size_t start = i;
    while (i < s.size() && is_alnum_lower(s[i])) ++i;
    if (i == start) return false;
    if (i == s.size()) return true;
    if (s[i] == '.') {
      ++i;
    } else if (s[i] == '_') {
      i += (i + 1 < s.size() && s[i + 1] == '_') ? 2 : 1;
    } else if (s[i] == '-') {
      while (i < s.size() && s[i] == '-') ++i;
    } else {
      return false;
    }
  }
}

}  // namespace

RegResult<void> validate_name(std::string_view name) {
  if (name.empty() || name.size() > 255)
    return reg_error(Code::kNameInvalid, "repository name must be 1 to 255 characters");
  size_t start = 0;
  for (;;) {
    size_t slash = name.find('/', start);
    std::string_view comp =
        name.substr(start, slash == std::string_view::npos ? slash : slash - start);
    if (!valid_component(comp))
      return reg_error(Code::kNameInvalid, "invalid repository name", std::string(name));
    if (slash == std::string_view::npos) return {};
    start = slash + 1;
  }
}

RegResult<void> validate_tag(std::string_view tag) {
  auto ok_first = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  bool ok = !tag.empty() && tag.size() <= 128 && ok_first(tag[0]);
  for (size_t i = 1; ok && i < tag.size(); ++i)
    ok = ok_first(tag[i]) || tag[i] == '.' || tag[i] == '-';
  if (!ok) return reg_error(Code::kTagInvalid, "invalid tag", std::string(tag.substr(0, 256)));
  return {};
}

}  // namespace vireo::registry
