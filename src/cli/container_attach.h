#pragma once
// vireo ct attach, and the interactive foreground of vireo ct run -i/-t: the terminal bridged to
// a container through /1.0/containers/NAME/attach (docs/api.md). With a terminal on both sides
// the CLI's is put in raw mode (restored on every way out), its size follows SIGWINCH and
// Ctrl-P Ctrl-Q detaches, leaving the container running.
#include <CLI/CLI.hpp>

#include "base/json.h"
#include "cli/context.h"

namespace vireo::cli {

inline const std::string kContainers = "/1.0/containers";
// /1.0/containers/NAME + suffix; kInvalidArgument for a name containers cannot have.
[[nodiscard]] Result<std::string> container_path(const std::string& name,
                                                 const std::string& suffix = "");

// The result of the operation a request answered with, once it is done (no progress bar: the
// container operations are quick or have nothing to show).
[[nodiscard]] Result<Json> finish_operation(Context& ctx, const Json& reply);

void add_attach_command(CLI::App* noun, Context& ctx);

// vireo ct exec -i/-t: runs request (the body of POST /1.0/containers/NAME/exec) in the running
// container through /1.0/containers/NAME/exec/attach and relays until it exits; its exit status
// becomes the CLI's. No detach keys: ending the CLI ends the process.
struct ExecStreams {
  bool input = false;  // -i: the CLI's stdin relayed
  bool tty = false;    // -t: a terminal for the process (the CLI's stdin must be one)
};
Result<void> exec_attached(Context& ctx, const std::string& name, const Json& request,
                           ExecStreams streams);

// vireo ct run -i/-t without -d: creates the container from body (the create request), attaches
// to it, starts it and relays until it exits; its exit status becomes the CLI's. With remove,
// the container is removed once it exited (also after a detach, by the daemon).
Result<void> run_attached(Context& ctx, Json body, bool remove);

}  // namespace vireo::cli
