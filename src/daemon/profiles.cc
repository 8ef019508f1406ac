#include "daemon/profiles.h"

#include "base/strings.h"

namespace vireo::daemon {

namespace {

Result<void> check_string_map(const Json& map, const std::string& field) {
  if (!map.is_object())
    return make_error(ErrorCode::kInvalidArgument, "field '{}' must be an object of strings",
                      field);
  for (const auto& [key, value] : map.items()) {
    if (key.empty() || key.size() > 128)
      return make_error(ErrorCode::kInvalidArgument,
                        "field '{}': key '{}' must be 1-128 characters", field, key);
    if (!value.is_string())
      return make_error(ErrorCode::kInvalidArgument, "field '{}.{}' must be a string", field, key);
  }
  return {};
}

}  // namespace

Result<Json> validate_profile(const Json& spec) {
  static const std::set<std::string> kKnown = {"description", "config", "devices"};
  for (const auto& [key, value] : spec.items()) {
    if (!kKnown.contains(key))
      return make_error(ErrorCode::kInvalidArgument,
                        "unknown field '{}' (a profile has description, config, devices)", key);
  }
  Json out = {{"description", ""}, {"config", Json::object()}, {"devices", Json::object()}};
  if (spec.contains("description")) {
    if (!spec["description"].is_string())
      return make_error(ErrorCode::kInvalidArgument, "field 'description' must be a string");
    if (spec["description"].get_ref<const std::string&>().size() > 1024)
      return make_error(ErrorCode::kInvalidArgument,
                        "field 'description' is longer than 1024 characters");
    out["description"] = spec["description"];
  }
  if (spec.contains("config")) {
    TRY(check_string_map(spec["config"], "config"));
    out["config"] = spec["config"];
  }
  if (spec.contains("devices")) {
    if (!spec["devices"].is_object())
      return make_error(ErrorCode::kInvalidArgument, "field 'devices' must be an object");
    for (const auto& [name, device] : spec["devices"].items()) {
      TRY(validate_name(name, "device"));
      TRY(check_string_map(device, "devices." + name));
      if (!device.contains("type"))
        return make_error(ErrorCode::kInvalidArgument, "device '{}' needs a 'type'", name);
    }
    out["devices"] = spec["devices"];
  }
  return out;
}

server::ObjectKind profile_kind() {
  return server::ObjectKind{
      .collection = "profiles", .noun = "profile", .validate = validate_profile};
}

}  // namespace vireo::daemon
