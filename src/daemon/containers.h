#pragma once
// /1.0/containers: the host's containers (containers::Engine on <state root>/containers) through
// vireod. Create, get, list, start, kill and delete answer directly (201/200); stop, restart,
// wait and create-with-wait run as operations (202). Logs answer at once, or with follow=1 when
// lines arrive, the container stops or the timeout passes. Contract: docs/api.md; engine:
// docs/containers.md, "Containers in vireod (engine)".
//
// The engine opens when the routes are added (re-adopting running containers and applying
// restart policies); if that fails the daemon still serves everything else and each container
// request retries the open and reports its error. Requests that may block (start, create,
// delete) run on their own threads, never on the io thread.
#include <filesystem>
#include <memory>

#include <boost/asio/io_context.hpp>

#include "server/events.h"
#include "server/operations.h"
#include "server/router.h"

namespace vireo::daemon {

class ImageManager;
class NetworkManager;
class StorageManager;

// networks: for containers on Vireo networks (null: network none and host only); storage: for
// named volumes (null: bind mounts only); both outlive the routes.
void add_container_routes(server::Router& router, server::EventHub& events,
                          server::OperationManager& operations, boost::asio::io_context& io,
                          const std::shared_ptr<ImageManager>& images,
                          const std::filesystem::path& state_root, NetworkManager* networks,
                          StorageManager* storage);

}  // namespace vireo::daemon
