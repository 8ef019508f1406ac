// vireo image build: a Containerfile built by vireod (POST /1.0/images/build).
#include "cli/image_common.h"

namespace vireo::cli {

void add_image_build_command(CLI::App*, Context&) {}

}  // namespace vireo::cli
