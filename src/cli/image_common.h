#pragma once
// What the `vireo image` commands share (image_cmd.cc, image_build_cmd.cc).
#include <string>

#include "base/json.h"
#include "base/result.h"
#include "cli/context.h"

namespace vireo::cli {

extern const std::string kImages;  // "/1.0/images"

// The URL of an image. References are checked for characters that would change the URL's
// meaning; one with a '/' goes in ?ref= since it cannot be a single path segment.
Result<std::string> image_path(const std::string& ref, const std::string& suffix = "");
// A request to vireod; the reply's body.
Result<Json> image_request(Context& ctx, const char* method, const std::string& path,
                           const Json* body = nullptr);
// Starts the operation the daemon answers path+body with and follows it (with a progress bar
// on a terminal); returns its result.
Result<Json> run_image_operation(Context& ctx, const std::string& path, const Json& body);
std::string short_digest(const Json& digest);
std::string bytes_text(const Json& v);
// An image as `vireo image show` prints it.
void print_image(Context& ctx, const Json& img);

// `vireo image build` (image_build_cmd.cc).
void add_image_build_command(CLI::App* noun, Context& ctx);

}  // namespace vireo::cli
