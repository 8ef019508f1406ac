// vireo: the command line for Vireo. All the work is in src/cli.
#include "cli/context.h"

int main(int argc, char** argv) {
  return vireo::cli::run(argc, argv);
}
