#pragma once
// The JSON form of an event on /1.0/events. Types: "lifecycle" (an object was created,
// changed, started...), "operation" (an operation changed), "log" (a daemon log line).
#include <string>

#include "base/json.h"
#include "base/result.h"

namespace vireo::api {

struct Event {
  std::string type;
  std::string timestamp;
  Json metadata;
};

Json to_json(const Event& e);
[[nodiscard]] Result<Event> event_from_json(const Json& j);

// Lifecycle metadata: {"action": "profile-created", "source": "/1.0/profiles/web"}.
Json lifecycle_metadata(std::string_view action, std::string_view source);

}  // namespace vireo::api
