#pragma once
// What every CLI command shares: the global flags, the lazily opened client, the output format.
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/output.h"
#include "client/client.h"

namespace vireo::cli {

class Context {
 public:
  client::ConnectOptions connect;
  std::string format_name = "table";

  // Connects on first use, so `vireo --help` and completion work without a daemon.
  Result<client::Client*> client();
  Format format() const { return parse_format(format_name).value_or(Format::kTable); }

  // Set by the command that ran; main turns it into the exit code.
  Result<void> outcome;
  // Set by commands that pass on another program's exit status (vireo app run).
  std::optional<int> exit_code;

 private:
  std::unique_ptr<client::Client> client_;
};

// Each noun adds its subcommands to the app. The callbacks store their outcome in ctx.
void add_info_command(CLI::App& app, Context& ctx);
void add_operation_commands(CLI::App& app, Context& ctx);
void add_events_command(CLI::App& app, Context& ctx);
void add_profile_commands(CLI::App& app, Context& ctx);
void add_vm_commands(CLI::App& app, Context& ctx);
void add_network_commands(CLI::App& app, Context& ctx);
void add_storage_commands(CLI::App& app, Context& ctx);
void add_image_commands(CLI::App& app, Context& ctx);
void add_container_commands(CLI::App& app, Context& ctx);
void add_debug_commands(CLI::App& app, Context& ctx);
void add_app_commands(CLI::App& app, Context& ctx);
void add_completion_command(CLI::App& app, Context& ctx);

// Opens the object in $EDITOR as JSON and saves it with If-Match, so a concurrent change is
// refused instead of overwritten.
Result<void> edit_in_editor(Context& ctx, const std::string& collection, const std::string& name);

// Follows an operation to its end with a progress bar on a terminal; failure and
// cancellation are errors carrying the operation's message.
Result<api::Operation> follow_with_progress(Context& ctx, const std::string& id);
// A request the daemon answers with an operation: follows it (progress on a terminal) and
// returns its result.
Result<Json> run_operation(Context& ctx, const char* method, const std::string& path,
                           const Json* body = nullptr);

// Runs the CLI; returns the process exit code (0 ok, 1 failed, 2 usage).
int run(int argc, char** argv);

}  // namespace vireo::cli
