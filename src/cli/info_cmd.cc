#include "base/strings.h"
#include "cli/context.h"

namespace vireo::cli {

static Result<void> show_info(Context& ctx) {
  auto* c = TRY(ctx.client());
  auto info = TRY(c->info());
  const auto& h = info.host;
  std::vector<std::vector<std::string>> rows = {
      {"version:", info.version},
      {"api:", info.api_version},
      {"hostname:", h.hostname},
      {"kernel:", h.kernel + " (" + h.architecture + ")"},
      {"cpus:", fmt::format("{} x {}", h.cpus, h.cpu_model)},
      {"memory:", format_bytes(h.memory_bytes)},
      {"cgroups:", h.cgroup_mode},
      {"accelerator:", h.accelerator + " (" + h.accelerator_reason + ")"},
  };
  print(ctx.format(), api::to_json(info), rows);
  return {};
}

void add_info_command(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand("info", "Show the server and what the host can do");
  cmd->callback([&ctx] { ctx.outcome = show_info(ctx); });
}

}  // namespace vireo::cli
