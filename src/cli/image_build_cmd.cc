// vireo image build: a Containerfile built by vireod (POST /1.0/images/build). The Containerfile
// and the context directory are on vireod's host: the CLI sends absolute paths. On a terminal
// the steps show in the progress bar; afterwards each step and its RUN output is printed, then
// the image as `vireo image show` prints it.
#include <cstdio>
#include <filesystem>
#include <map>

#include "base/strings.h"
#include "cli/image_common.h"

namespace vireo::cli {

namespace {

namespace fs = std::filesystem;

struct BuildFlags {
  std::string file, tag, context;
  std::vector<std::string> build_args;
  bool no_cache = false;
};

Result<Json> request_body(const BuildFlags& f) {
  fs::path context = fs::absolute(f.context).lexically_normal();
  fs::path file;
  if (!f.file.empty()) {
    file = fs::absolute(f.file).lexically_normal();
  } else {
    // Like docker and podman: the context's Containerfile, else its Dockerfile.
    file = context / "Containerfile";
    std::error_code ec;
    if (!fs::exists(file, ec) && fs::exists(context / "Dockerfile", ec))
      file = context / "Dockerfile";
  }
  Json args = Json::object();
  for (const auto& kv : f.build_args) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return make_error(ErrorCode::kInvalidArgument, "--build-arg '{}': expected KEY=VALUE", kv);
    args[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  Json body = {{"containerfile", file.string()},
               {"context", context.string()},
               {"build_args", args},
               {"no_cache", f.no_cache}};
  if (!f.tag.empty()) body["tag"] = f.tag;
  return body;
}

void print_steps(const Json& result) {
  const Json log = result.value("log", Json::array());
  int total = result.value("steps", 0);
  for (const auto& s : log) {
    fmt::print("step {}/{}: {}{}\n", s.value("step", 0), total, s.value("instruction", ""),
               s.value("cached", false) ? "  (cached)" : "");
    std::string out = s.value("output", "");
    for (const auto& line : split(out, '\n'))
      if (!line.empty()) fmt::print("  {}\n", line);
  }
  fmt::print("built: {} steps, {} cached\n", total, result.value("cached", 0));
}

}  // namespace

void add_image_build_command(CLI::App* noun, Context& ctx) {
  static BuildFlags f;
  auto* cmd =
      noun->add_subcommand("build", "Build an image from a Containerfile (on vireod's host)");
  cmd->add_option("context", f.context, "Build context directory (COPY and ADD read from it)")
      ->required();
  cmd->add_option("--file,-f", f.file,
                  "Containerfile (default: CONTEXT/Containerfile or Dockerfile)");
  cmd->add_option("--tag,-t", f.tag, "NAME[:TAG] to store the image under");
  cmd->add_option("--build-arg", f.build_args, "KEY=VALUE for an ARG (repeatable)");
  cmd->add_flag("--no-cache", f.no_cache, "Run every step, do not reuse cached layers");
  cmd->callback([&ctx] {
    ctx.outcome = [&ctx]() -> Result<void> {
      Json body = TRY(request_body(f));
      Json result = TRY(run_image_operation(ctx, kImages + "/build", body));
      if (ctx.format() == Format::kTable) print_steps(result);
      print_image(ctx, result);
      return {};
    }();
  });
}

}  // namespace vireo::cli
