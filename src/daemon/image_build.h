#pragma once
// POST /1.0/images/build: `vireo image build` (a Containerfile and its context directory on
// vireod's host) as an operation.
#include <memory>

#include "daemon/image_manager.h"
#include "server/router.h"

namespace vireo::daemon {

void add_image_build_route(server::Router& router, const std::shared_ptr<ImageManager>& images);

}  // namespace vireo::daemon
