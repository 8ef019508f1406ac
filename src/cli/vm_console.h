#pragma once
// vireo vm console: see vm_console.cc.
#include <CLI/CLI.hpp>

#include "cli/context.h"

namespace vireo::cli {

void add_vm_console_command(CLI::App* noun, Context& ctx);

}  // namespace vireo::cli
