// Stands in for a daemon that starts a VM and is then `kill -9`ed: starts the test guest in
// RUN_DIR, waits for VIREO-GUEST-READY, prints QEMU's pid and SIGKILLs itself.
// Usage: compute_vm_start_helper RUN_DIR KERNEL INITRD
#include <signal.h>

#include <cstdio>

#include "base/ids.h"
#include "compute/vm_process.h"

int main(int argc, char** argv) {
  using namespace vireo::compute;
  if (argc != 4) return 2;
  VmSpec spec{.name = "vm1",
              .uuid = vireo::random_uuid(),
              .kernel = argv[2],
              .initrd = argv[3],
              .cmdline = "console=ttyS0 quiet"};
  auto vm = VmProcess::start(spec, argv[1]);
  if (!vm) {
    std::fprintf(stderr, "%s\n", vm.error().message().c_str());
    return 1;
  }
  auto ready = (*vm)->console()->wait_for("VIREO-GUEST-READY", std::chrono::seconds(90));
  if (!ready) {
    std::fprintf(stderr, "%s\n", ready.error().message().c_str());
    return 1;
  }
  std::printf("%d\n", (*vm)->pid());
  std::fflush(stdout);
  ::raise(SIGKILL);
  return 3;
}
