#pragma once
// GET /1.0/containers/{name}/exec/attach?request=<JSON>&stdin=1&tty=1 (WebSocket): a command
// run in the running container (containers::ExecSession) and bridged to the client with the
// frames of attach (daemon/container_attach.h, monitor/attach.h): output as 1 (2 for stderr
// without a terminal), 3 {"exit_code"} once it exited and its output is drained; from the
// client 0 stdin, 4 resize, 5 close stdin. Closing the WebSocket kills the process (SIGKILL).
// Contract: docs/api.md.
//
// One thread per session relays; the route's owner (the router) joins them when destroyed.
#include "daemon/container_attach.h"

namespace vireo::daemon {

void add_container_exec_route(server::Router& router, EngineFn engine);

}  // namespace vireo::daemon
