#include <iostream>

#include "base/strings.h"
#include "cli/context.h"

namespace vireo::cli {

// One line per event: JSON lines with --format json, a readable summary otherwise.
static std::string summarize(const api::Event& e) {
  const Json& m = e.metadata;
  std::string what;
  if (e.type == "lifecycle")
    what = plain(m.value("action", Json())) + " " + plain(m.value("source", Json()));
  else if (e.type == "operation")
    what = fmt::format("{} {} {}", plain(m.value("id", Json())), plain(m.value("status", Json())),
                       plain(m.value("description", Json())));
  else if (e.type == "log")
    what = plain(m.value("level", Json())) + " " + plain(m.value("message", Json()));
  else
    what = dump_json(m);
  return fmt::format("{} {} {}", e.timestamp, e.type, what);
}

void add_events_command(CLI::App& app, Context& ctx) {
  static std::string types;
  auto* cmd =
      app.add_subcommand("events", "Stream events (lifecycle, operation, log) until interrupted");
  cmd->add_option("--type", types, "Comma-separated event types (default: all)");
  cmd->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      std::vector<std::string> wanted;
      if (!types.empty()) wanted = split(types, ',');
      auto* c = TRY(ctx.client());
      return c->watch_events(wanted, [&](const api::Event& e) {
        if (ctx.format() == Format::kTable)
          std::cout << summarize(e) << std::endl;
        else if (ctx.format() == Format::kYaml)
          std::cout << "---\n" << to_yaml(api::to_json(e)) << std::flush;
        else
          std::cout << dump_json(api::to_json(e)) << std::endl;
        return true;
      });
    }();
  });
}

}  // namespace vireo::cli
