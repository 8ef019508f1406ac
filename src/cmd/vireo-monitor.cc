// vireo-monitor: the per-container monitor (like Podman's conmon). vireod starts one per
// container; it starts the container through the OCI runtime, holds its stdio, writes its logs,
// serves attach clients and records its exit, independently of vireod's own lifetime.
// Interface: src/monitor/options.h and docs/containers.md, section "vireo-monitor".
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "monitor/monitor.h"
#include "monitor/options.h"

using namespace vireo::monitor;

namespace {

// stdio's printf is not linked in: it would add to every monitor's resident size.
void print(int fd, std::string_view text) {
  (void)!::write(fd, text.data(), text.size());
}

int fail(Options& o, const vireo::Error& e) {
  print(2, "vireo-monitor: " + e.message() + "\n");
  report_ready(o, ready_error_line(e.message()));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  // Buffers for a burst of output (attach queues) are large allocations: keep them mmapped, so
  // that freeing them returns the memory, instead of letting malloc raise its threshold and
  // keep them on the heap.
  ::mallopt(M_MMAP_THRESHOLD, 64 * 1024);
  ::mallopt(M_TRIM_THRESHOLD, 128 * 1024);
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      print(1, usage());
      return 0;
    }
  }
  auto parsed = parse_options(args);
  if (!parsed) {
    print(2, "vireo-monitor: " + parsed.error().message() + "\n" + usage());
    return 2;
  }
  Options o = std::move(*parsed);
  if (auto detached = detach(o); !detached) return fail(o, detached.error());
  auto monitor = Monitor::create(o);
  if (!monitor) return fail(o, monitor.error());
  if (auto started = (*monitor)->start(); !started) return fail(o, started.error());
  return (*monitor)->run();
}
