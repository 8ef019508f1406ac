#include <iostream>

#include "cli/context.h"

namespace vireo::cli {

// Hidden: drives the daemon's /1.0/debug test hooks (vireod --enable-debug-api).
void add_debug_commands(CLI::App& app, Context& ctx) {
  auto* noun = app.add_subcommand("debug", "");  // empty description hides it from help
  noun->require_subcommand(1);
  static double seconds = 1;
  static bool fail = false, detach = false;
  auto* sleep = noun->add_subcommand("sleep", "Run a sleeping operation");
  sleep->add_option("seconds", seconds);
  sleep->add_flag("--fail", fail, "Make the operation fail at the end");
  sleep->add_flag("--detach", detach, "Print the operation ID and return at once");
  sleep->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      Json body = {{"seconds", seconds}, {"fail", fail}};
      auto reply = TRY(TRY(ctx.client())->request("POST", "/1.0/debug/sleep", &body));
      auto op = TRY(api::operation_from_json(reply.body));
      if (detach) {
        std::cout << op.id << "\n";
        return {};
      }
      TRY(follow_with_progress(ctx, op.id));
      return {};
    }();
  });
}

}  // namespace vireo::cli
