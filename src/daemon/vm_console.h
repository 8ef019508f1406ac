#pragma once
// GET /1.0/vms/{name}/console/attach: a running VM's serial console as a WebSocket (raw bytes
// both ways, backlog first, several viewers). See vm_console.cc.
#include <functional>
#include <memory>
#include <string>

#include "compute/vm_process.h"
#include "server/router.h"
#include "server/websocket.h"

namespace vireo::daemon {

// The running VM of that name, or the API error (404 unknown, 409 not running).
using RunningVm = std::function<Result<std::shared_ptr<compute::VmProcess>>(const std::string&)>;

void add_vm_console_route(server::Router& router, RunningVm running);

}  // namespace vireo::daemon
