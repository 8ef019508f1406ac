#include <cstdlib>
#include <iostream>

#include "cli/context.h"

namespace vireo::cli {

Result<client::Client*> Context::client() {
  if (!client_) client_ = TRY(client::Client::connect(connect));
  return client_.get();
}

static void add_global_options(CLI::App& app, Context& ctx) {
  if (const char* env = std::getenv("VIREO_SOCKET")) ctx.connect.socket_path = env;
  if (const char* env = std::getenv("VIREO_REMOTE")) ctx.connect.remote = env;
  if (const char* env = std::getenv("VIREO_TOKEN")) ctx.connect.token = env;
  app.add_option("--socket", ctx.connect.socket_path, "vireod's Unix socket (env VIREO_SOCKET)")
      ->capture_default_str();
  app.add_option("--remote", ctx.connect.remote,
                 "A remote vireod HOST:PORT over TLS (env VIREO_REMOTE)");
  app.add_option("--token", ctx.connect.token, "Bearer token for --remote (env VIREO_TOKEN)");
  app.add_option("--tls-cert", ctx.connect.client_cert, "Client certificate (PEM) for --remote");
  app.add_option("--tls-key", ctx.connect.client_key, "Client key (PEM) for --remote");
  app.add_option("--tls-server-cert", ctx.connect.server_ca,
                 "Certificate to verify the remote with");
  app.add_option("--format,-f", ctx.format_name, "Output format: table, json or yaml")
      ->check(CLI::IsMember({"table", "json", "yaml"}))
      ->capture_default_str();
}

static int parse_and_finish(CLI::App& app, Context& ctx, int argc, char** argv) {
  try {
    app.parse(argc, argv);

  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (!ctx.outcome) {
    std::cerr << ctx.outcome.error().message() << "\n";
    return ctx.outcome.error().code() == ErrorCode::kInvalidArgument &&
                   ctx.outcome.error().message().starts_with("usage:")
               ? 2
               : 1;
  }
  return ctx.exit_code.value_or(0);
}

int run(int argc, char** argv) {
  CLI::App app{"vireo: run and connect VMs, containers, networks and storage"};
  app.set_version_flag("--version", VIREO_VERSION_STRING);
  app.require_subcommand(1);
  app.fallthrough();  // global flags are accepted after the subcommand too
  Context ctx;
  add_global_options(app, ctx);
  // `vireo app run` is an app's start-up: build only the app commands, not the whole tree.
  if (argc > 1 && std::string_view(argv[1]) == "app") {
    add_app_commands(app, ctx);
    return parse_and_finish(app, ctx, argc, argv);
  }
  add_info_command(app, ctx);
  add_operation_commands(app, ctx);
  add_events_command(app, ctx);
  add_profile_commands(app, ctx);
  add_vm_commands(app, ctx);
  add_network_commands(app, ctx);
  add_storage_commands(app, ctx);
  add_image_commands(app, ctx);
  add_container_commands(app, ctx);
  add_debug_commands(app, ctx);
  add_app_commands(app, ctx);
  add_completion_command(app, ctx);
  return parse_and_finish(app, ctx, argc, argv);
}

}  // namespace vireo::cli
