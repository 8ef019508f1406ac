#pragma once
// vireo vm snapshot create|ls|restore|rm: see vm_snapshot_cmd.cc.
#include <CLI/CLI.hpp>

#include "cli/context.h"

namespace vireo::cli {

void add_vm_snapshot_commands(CLI::App* noun, Context& ctx);

}  // namespace vireo::cli
