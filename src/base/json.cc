#include "base/json.h"

namespace vireo {

Result<Json> parse_json(std::string_view text) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
    std::string what = e.what();
    if (auto pos = what.find("] "); pos != std::string::npos) what = what.substr(pos + 2);
    return make_error(ErrorCode::kInvalidArgument, "invalid JSON at byte {}: {}", e.byte, what);
  } catch (const Json::exception& e) {
    // Valid syntax nlohmann cannot hold, such as 1e999 (out_of_range): still the caller's input.
    std::string what = e.what();
    if (auto pos = what.find("] "); pos != std::string::npos) what = what.substr(pos + 2);
    return make_error(ErrorCode::kInvalidArgument, "invalid JSON: {}", what);
  }
}

void merge_patch(Json& target, const Json& patch) {
  target.merge_patch(patch);
}

Result<std::string> get_string(const Json& j, const char* key, bool required) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (required) return make_error(ErrorCode::kInvalidArgument, "missing field '{}'", key);
    return std::string();
  }
  if (!it->is_string())
    return make_error(ErrorCode::kInvalidArgument, "'{}' must be a string", key);
  return it->get<std::string>();
}

std::string dump_json(const Json& j, int indent) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

}  // namespace vireo
