#include "container/json_fields.h"

#include <algorithm>

namespace vireo::container {

namespace {

std::string_view type_name(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "object";
    case Json::value_t::array:
      return "array";
    case Json::value_t::string:
      return "string";
    case Json::value_t::boolean:
      return "boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "integer";
    case Json::value_t::number_float:
      return "number";
    default:
      return "value";
  }
}

}  // namespace

std::unexpected<Error> JsonFields::fail(const std::string& path, std::string_view what) const {
  return make_error(ErrorCode::kInvalidArgument, "{}: {}: {}", doc_, path, what);
}

std::string JsonFields::join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
}

std::string JsonFields::index(const std::string& path, size_t i) {
  return fmt::format("{}[{}]", path, i);
}

const Json* JsonFields::find(const Json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

Result<void> JsonFields::expect_object(const Json& j, const std::string& path) const {
  if (!j.is_object()) return fail(path, fmt::format("expected an object, got {}", type_name(j)));
  return {};
}

Result<void> JsonFields::expect_array(const Json& j, const std::string& path) const {
  if (!j.is_array()) return fail(path, fmt::format("expected an array, got {}", type_name(j)));
  return {};
}

void JsonFields::warn_unknown(const Json& obj, const std::string& path,
                              std::initializer_list<std::string_view> known) const {
  if (!warnings_) return;
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) == known.end())
      warnings_->push_back(
          fmt::format("{}: {}: unknown field ignored", doc_, join(path, it.key())));
  }
}

Result<std::string> JsonFields::string(const Json& j, const std::string& path) const {
  if (!j.is_string()) return fail(path, fmt::format("expected a string, got {}", type_name(j)));
  return j.get<std::string>();
}

Result<bool> JsonFields::boolean(const Json& j, const std::string& path) const {
  if (!j.is_boolean()) return fail(path, fmt::format("expected a boolean, got {}", type_name(j)));
  return j.get<bool>();
}

Result<uint64_t> JsonFields::unsigned_int(const Json& j, const std::string& path,
                                          uint64_t max) const {
  if (j.is_number_integer() && !j.is_number_unsigned() && j.get<int64_t>() < 0)
    return fail(path, "expected an unsigned integer, got a negative one");
  if (!j.is_number_unsigned())
    return fail(path, fmt::format("expected an unsigned integer, got {}", type_name(j)));
  uint64_t v = j.get<uint64_t>();
  if (v > max) return fail(path, fmt::format("{} is out of range (max {})", v, max));
  return v;
}

Result<int64_t> JsonFields::signed_int(const Json& j, const std::string& path) const {
  if (j.is_number_unsigned() && j.get<uint64_t>() > uint64_t(INT64_MAX))
    return fail(path, "integer out of range");
  if (!j.is_number_integer())
    return fail(path, fmt::format("expected an integer, got {}", type_name(j)));
  return j.get<int64_t>();
}

Result<std::vector<std::string>> JsonFields::string_list(const Json& j,
                                                         const std::string& path) const {
  TRY(expect_array(j, path));
  std::vector<std::string> out;
  out.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) out.push_back(TRY(string(j[i], index(path, i))));
  return out;
}

Result<std::map<std::string, std::string>> JsonFields::string_map(const Json& j,
                                                                  const std::string& path) const {
  TRY(expect_object(j, path));
  std::map<std::string, std::string> out;
  for (auto it = j.begin(); it != j.end(); ++it)
    out[it.key()] = TRY(string(it.value(), join(path, it.key())));
  return out;
}

Result<void> JsonFields::get(const Json& obj, const std::string& path, std::string_view key,
                             std::string& out) const {
  if (const Json* v = find(obj, key)) out = TRY(string(*v, join(path, key)));
  return {};
}

Result<void> JsonFields::get(const Json& obj, const std::string& path, std::string_view key,
                             bool& out) const {
  if (const Json* v = find(obj, key)) out = TRY(boolean(*v, join(path, key)));
  return {};
}

Result<void> JsonFields::get(const Json& obj, const std::string& path, std::string_view key,
                             std::vector<std::string>& out) const {
  if (const Json* v = find(obj, key)) out = TRY(string_list(*v, join(path, key)));
  return {};
}

Result<void> JsonFields::get(const Json& obj, const std::string& path, std::string_view key,
                             std::map<std::string, std::string>& out) const {
  if (const Json* v = find(obj, key)) out = TRY(string_map(*v, join(path, key)));
  return {};
}

Result<const Json*> JsonFields::require(const Json& obj, const std::string& path,
                                        std::string_view key) const {
  const Json* v = find(obj, key);
  if (!v) return fail(join(path, key), "required field missing");
  return v;
}

}  // namespace vireo::container
