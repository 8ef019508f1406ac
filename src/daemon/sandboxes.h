#pragma once
// /1.0/sandboxes: the application sandboxes (`vireo app`) whose stores live under the daemon's
// state root (STATE_ROOT/apps, which is root's own `vireo app` folder with the default root):
// list them with their stored changes, start one in the background (a managed app), stop it (an
// operation: the app may take a while to end), reset a store, delete an app that is not running.
#include <string>

#include "server/events.h"
#include "server/operations.h"
#include "server/router.h"

namespace vireo::daemon {

void add_sandbox_routes(server::Router& router, server::EventHub& events,
                        server::OperationManager& operations, const std::string& apps_dir);

}  // namespace vireo::daemon
