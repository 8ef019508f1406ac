#include "api/event.h"

namespace vireo::api {

Json to_json(const Event& e) {
  return {{"type", e.type}, {"timestamp", e.timestamp}, {"metadata", e.metadata}};
}

Result<Event> event_from_json(const Json& j) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    return make_error(ErrorCode::kInvalidArgument, "event: missing type");
  return Event{j["type"].get<std::string>(), j.value("timestamp", ""),
               j.value("metadata", Json::object())};
}

Json lifecycle_metadata(std::string_view action, std::string_view source) {
  return {{"action", action}, {"source", source}};
}

}  // namespace vireo::api
