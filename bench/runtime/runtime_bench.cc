// Times create + start + wait + delete of one bundle with two OCI runtimes, alternating cycle
// by cycle so both see the same machine load. The harness is a child subreaper, so each
// container's init (orphaned when `create` exits) is reparented to it and waited for directly,
// the same way for every runtime.
//
//   runtime_bench BUNDLE ITERATIONS RUNTIME_A ROOT_A RUNTIME_B ROOT_B
// prints per runtime: "<runtime> <iterations> <total seconds> <ms per cycle> <peak RSS KiB>",
// the peak RSS being the largest of its processes (runtime commands and container inits).
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

extern char** environ;

namespace {

struct Runtime {
  std::string binary, root;
  double seconds = 0;
  long peak_rss_kib = 0;
};

int wait_for(pid_t pid, Runtime& rt) {
  int status = 0;
  rusage ru{};
  if (wait4(pid, &status, 0, &ru) < 0) return -1;
  rt.peak_rss_kib = std::max(rt.peak_rss_kib, ru.ru_maxrss);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int run(Runtime& rt, std::vector<std::string> args) {
  args.insert(args.begin(), {rt.binary, "--root", rt.root});
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  return wait_for(pid, rt);
}

bool cycle(Runtime& rt, const std::string& bundle, int i) {
  std::string id = "bench-" + std::to_string(getpid()) + "-" + std::to_string(i);
  std::string pid_file = rt.root + "/" + id + ".pid";
  auto start = std::chrono::steady_clock::now();
  if (run(rt, {"create", "--bundle", bundle, "--pid-file", pid_file, id}) != 0) return false;
  pid_t init = 0;
  std::ifstream(pid_file) >> init;
  unlink(pid_file.c_str());
  if (run(rt, {"start", id}) != 0) return false;
  if (init <= 0 || wait_for(init, rt) != 0) {
    fprintf(stderr, "%s: container %s failed\n", rt.binary.c_str(), id.c_str());
    return false;
  }
  bool ok = run(rt, {"delete", id}) == 0;
  rt.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: %s BUNDLE ITERATIONS RUNTIME_A ROOT_A RUNTIME_B ROOT_B\n", argv[0]);
    return 2;
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  std::string bundle = argv[1];
  int n = atoi(argv[2]);
  Runtime runtimes[2] = {{argv[3], argv[4]}, {argv[5], argv[6]}};
  for (int i = 0; i < n; ++i) {
    for (auto& rt : runtimes) {
      if (!cycle(rt, bundle, i)) {
        fprintf(stderr, "%s: cycle %d failed\n", rt.binary.c_str(), i);
        return 1;
      }
    }
  }
  for (const auto& rt : runtimes)
    printf("%s %d %.3f %.2f %ld\n", rt.binary.c_str(), n, rt.seconds, rt.seconds * 1000 / n,
           rt.peak_rss_kib);
  return 0;
}
