#include "image/reference.h"

#include "base/strings.h"

namespace vireo::image {

namespace {

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

bool valid_component(std::string_view c, bool host) {
  if (c.empty() || c.size() > 128 || !std::isalnum(static_cast<unsigned char>(c[0]))) return false;
  for (char ch : c)
    if (!is_name_char(ch) && !(host && (ch == ':' || (ch >= 'A' && ch <= 'Z')))) return false;
  return true;
}

Result<void> validate_name(std::string_view name) {
  if (name.empty() || name.size() > 255)
    return make_error(ErrorCode::kInvalidArgument, "image name must be 1-255 characters");
  auto parts = split(name, '/');
  for (size_t i = 0; i < parts.size(); ++i) {
    bool host = i == 0 && parts.size() > 1;
    if (!valid_component(parts[i], host))
      return make_error(ErrorCode::kInvalidArgument,
                        "invalid image name '{}': components are lowercase letters, digits and "
                        "'._-', separated by '/'",
                        name);
  }
  return {};
}

Result<void> validate_tag(std::string_view tag) {
  bool ok = !tag.empty() && tag.size() <= 128 &&
            (std::isalnum(static_cast<unsigned char>(tag[0])) || tag[0] == '_');
  for (char c : tag)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
  if (!ok)
    return make_error(ErrorCode::kInvalidArgument,
                      "invalid tag '{}': 1-128 of letters, digits and '_.-', not starting with "
                      "'.' or '-'",
                      tag.substr(0, 200));
  return {};
}

}  // namespace

Result<Reference> Reference::parse(std::string_view text) {
  Reference ref;
  std::string_view rest = text;
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    ref.digest =
        TRY_CTX(Digest::parse(rest.substr(at + 1)), "image reference '{}'", text.substr(0, 300));
    rest = rest.substr(0, at);
  }
  auto colon = rest.rfind(':');
  auto slash = rest.rfind('/');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    ref.tag = rest.substr(colon + 1);
    TRY(validate_tag(ref.tag));
    rest = rest.substr(0, colon);
  } else if (!ref.digest) {
    ref.tag = "latest";
  }
  TRY(validate_name(rest));
  ref.name = rest;
  return ref;
}

std::string Reference::str() const {
  std::string s = name;
  if (!tag.empty()) s += ":" + tag;
  if (digest) s += "@" + digest->str();
  return s;
}

}  // namespace vireo::image
