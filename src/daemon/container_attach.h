#pragma once
// GET /1.0/containers/{name}/attach (WebSocket): a client bridged to the attach socket of the
// container's vireo-monitor. Each binary message carries whole monitor frames (monitor/attach.h)
// in both directions, unchanged; stdin frames are passed on only with ?stdin=1. A created
// container is awaited until it starts, so that a client attached before the start sees all of
// its output; the session ends after the exit frame, or when either side closes. Contract:
// docs/api.md.
//
// One thread per session relays between the monitor's socket and the WebSocket; the route's
// owner (the router) joins them when destroyed.
#include <functional>

#include "base/result.h"
#include "server/router.h"

namespace vireo::containers {
class Engine;
}

namespace vireo::daemon {

// The engine, opened on first use (as the container routes do).
using EngineFn = std::function<Result<containers::Engine*>()>;

void add_container_attach_route(server::Router& router, EngineFn engine);

}  // namespace vireo::daemon
