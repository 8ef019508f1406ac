#include "daemon/image_build.h"

namespace vireo::daemon {

void add_image_build_route(server::Router&, const std::shared_ptr<ImageManager>&) {}

}  // namespace vireo::daemon
