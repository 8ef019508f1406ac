// compute_vm_start_bench KERNEL INITRD [REPETITIONS]
//
// Time from asking for a VM to "VIREO-GUEST-READY" on its serial console, two ways, alternating
// within one run so both see the same host load:
//   runner: VmProcess::start (validation, run dir, QEMU started paused, QMP + console connected,
//           cont) and ConsoleLog::wait_for;
//   direct: the same QEMU command line (build_qemu_command, without -S) spawned directly, its
//           console socket connected as soon as it exists and read until the marker.
// Prints each run, the medians and the overhead, and exits 1 when the overhead exceeds the
// target (10 % and 150 ms).
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "base/ids.h"
#include "compute/qemu_command.h"
#include "compute/unix_socket.h"
#include "compute/vm_process.h"

extern char** environ;

namespace {

using namespace vireo;
using namespace vireo::compute;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr const char* kReady = "VIREO-GUEST-READY";
constexpr auto kTimeout = 120s;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Time spent inside VmProcess::start (QEMU set-up until the guest is resumed), per runner run.
std::vector<double> start_calls;

Result<double> time_runner(const VmSpec& spec, const fs::path& dir) {
  auto t0 = Clock::now();
  auto vm = TRY(VmProcess::start(spec, dir));
  start_calls.push_back(ms_since(t0));
  if (!vm->console()) return make_error(ErrorCode::kUnavailable, "no console");
  TRY(vm->console()->wait_for(kReady, kTimeout));
  double ms = ms_since(t0);
  TRY(vm->stop(StopMode::kForce, 5s));
  return ms;
}

// Reads the console socket until the marker shows up.
Result<void> read_until_ready(int fd, Clock::time_point deadline) {
  std::string seen;
  char buf[4096];
  while (seen.find(kReady) == std::string::npos) {
    pollfd pfd{fd, POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left <= 0ms || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
      return make_error(ErrorCode::kTimeout, "no READY");
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return make_error(ErrorCode::kUnavailable, "console closed");
    seen.append(buf, static_cast<size_t>(n));
  }
  return {};
}

Result<double> time_direct(const VmSpec& spec, const fs::path& dir) {
  fs::create_directories(dir);
  QemuPaths paths{.qmp_socket = (dir / "qmp.sock").string(),
                  .console_socket = (dir / "console.sock").string(),
                  .pidfile = (dir / "qemu.pid").string()};
  auto argv = TRY(build_qemu_command(spec, paths));
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  auto t0 = Clock::now();
  pid_t pid = 0;
  if (int rc = ::posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ); rc != 0)
    return std::unexpected(Error::from_errno(rc, "spawn qemu"));
  auto deadline = t0 + kTimeout;
  Result<Fd> console = make_error(ErrorCode::kTimeout, "console socket never appeared");
  while (Clock::now() < deadline) {
    console = connect_unix(paths.console_socket);
    if (console) break;
    std::this_thread::sleep_for(1ms);
  }
  Result<void> ready = console ? read_until_ready(console->get(), deadline)
                               : Result<void>(std::unexpected(console.error()));
  double ms = ms_since(t0);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  TRY(ready);
  return ms;
}

double min_of(const std::vector<double>& v) {
  return *std::min_element(v.begin(), v.end());
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s KERNEL INITRD [REPETITIONS]\n", argv[0]);
    return 2;
  }
  int reps = argc > 3 ? std::atoi(argv[3]) : 5;
  fs::path root = fs::temp_directory_path() / ("vireo-bench-" + random_hex(4));
  VmSpec spec{.name = "bench",
              .uuid = random_uuid(),
              .memory_mib = 256,
              .kernel = argv[1],
              .initrd = argv[2],
              .cmdline = "console=ttyS0 quiet"};
  std::vector<double> runner, direct;
  int status = 0;
  for (int i = 0; i < reps && status == 0; ++i) {
    // Alternate which goes first so slow drift in host load hits both equally.
    for (int k = 0; k < 2; ++k) {
      bool use_runner = (i + k) % 2 == 0;
      fs::path dir = root / fmt::format("{}-{}", use_runner ? "runner" : "direct", i);
      auto ms = use_runner ? time_runner(spec, dir) : time_direct(spec, dir);
      if (!ms) {
        std::fprintf(stderr, "run %d failed: %s\n", i, ms.error().message().c_str());
        status = 1;
        break;
      }
      (use_runner ? runner : direct).push_back(*ms);
      std::printf("run %d %-6s %8.1f ms\n", i, use_runner ? "runner" : "direct", *ms);
      std::fflush(stdout);
    }
  }
  fs::remove_all(root);
  if (status != 0) return status;
  double r = median(runner), d = median(direct);
  double over = r - d, pct = 100.0 * over / d;
  std::printf(
      "median to READY: runner %.1f ms, direct %.1f ms, overhead %+.1f ms (%+.1f %%), "
      "%d repetitions, accel tcg\n",
      r, d, over, pct, reps);
  std::printf("fastest to READY: runner %.1f ms, direct %.1f ms, difference %+.1f ms\n",
              min_of(runner), min_of(direct), min_of(runner) - min_of(direct));
  std::printf("VmProcess::start() until the guest runs: median %.1f ms, fastest %.1f ms\n",
              median(start_calls), min_of(start_calls));
  bool ok = over <= 150.0 && pct <= 10.0;
  std::printf("target (<= 10 %% and <= 150 ms): %s\n", ok ? "met" : "NOT met");
  return ok ? 0 : 1;
}
