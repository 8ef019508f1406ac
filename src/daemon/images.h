#pragma once
// /1.0/images: the host's OCI image store (image::ImageStore rooted at <state root>/images)
// through vireod. Imports and exports read and write paths on the daemon's host and run as
// operations (202 + Location); list, show, tag, remove and prune answer directly.
//
// An image is named in the path by its reference ("busybox:latest", "app@sha256:..."). A
// reference with a '/' (a repository path such as "team/app:v2") cannot be one path segment,
// so it may be given as the query parameter ?ref=REF instead, which wins over the path segment
// (the CLI sends "/1.0/images/-?ref=REF" for those).
//
// Thread-safety: the store is opened on first use and serializes its own calls, so a request
// that reaches it while an import runs waits for that import to finish.
#include <filesystem>
#include <memory>

#include "server/events.h"
#include "server/operations.h"
#include "server/router.h"

namespace vireo::daemon {

class ImageManager;

// Registers the routes; the image manager they share lives as long as the router (returned for
// the container routes, which use the same store).
std::shared_ptr<ImageManager> add_image_routes(server::Router& router, server::EventHub& events,
                                               server::OperationManager& operations,
                                               const std::filesystem::path& state_root);

}  // namespace vireo::daemon
