// API benchmark: GET /1.0 over vireod's Unix socket from many concurrent keep-alive clients,
// `vireo info` whole-process wall time, and vireod's idle RSS. Starts its own vireod on a
// temporary root unless --socket is given.
//
//   api_bench [--bin DIR] [--clients 50] [--requests 2000]
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "base/ids.h"
#include "base/subprocess.h"

using Clock = std::chrono::steady_clock;

namespace {

int connect_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Reads one HTTP response (headers + Content-Length body) from fd; returns the status or -1.
int read_response(int fd, std::string& buf) {
  for (;;) {
    auto end = buf.find("\r\n\r\n");
    if (end != std::string::npos) {
      auto cl = buf.find("Content-Length: ");
      if (cl == std::string::npos || cl > end) return -1;
      size_t len = std::stoul(buf.substr(cl + 16));
      if (buf.size() >= end + 4 + len) {
        int status = std::stoi(buf.substr(9, 3));
        buf.erase(0, end + 4 + len);
        return status;
      }
    }
    char tmp[16384];
    ssize_t n = ::read(fd, tmp, sizeof tmp);
    if (n <= 0) return -1;
    buf.append(tmp, static_cast<size_t>(n));
  }
}

struct LoadResult {
  std::vector<double> latencies_us;
  int errors = 0;
  double seconds = 0;
};

LoadResult run_load(const std::string& socket, int clients, int requests) {
  const std::string request = "GET /1.0 HTTP/1.1\r\nHost: vireod\r\n\r\n";
  std::vector<std::vector<double>> per_client(static_cast<size_t>(clients));
  std::atomic<int> errors{0};
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      int fd = connect_unix(socket);
      auto& lat = per_client[static_cast<size_t>(c)];
      lat.reserve(static_cast<size_t>(requests));
      ++ready;
      while (!go) std::this_thread::yield();
      std::string buf;
      for (int i = 0; i < requests; ++i) {
        auto t0 = Clock::now();
        if (fd < 0 ||
            ::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size()) ||
            read_response(fd, buf) != 200) {
          ++errors;
          if (fd >= 0) ::close(fd);
          fd = connect_unix(socket);
          buf.clear();
          continue;
        }
        lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
      if (fd >= 0) ::close(fd);
    });
  }
  while (ready < clients) std::this_thread::yield();
  auto start = Clock::now();
  go = true;
  for (auto& t : threads) t.join();
  LoadResult r;
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.errors = errors;
  for (auto& v : per_client) r.latencies_us.insert(r.latencies_us.end(), v.begin(), v.end());
  std::sort(r.latencies_us.begin(), r.latencies_us.end());
  return r;
}

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  return sorted[std::min(sorted.size() - 1,
                         static_cast<size_t>(p * static_cast<double>(sorted.size())))];
}

long rss_kib(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vireod API benchmark"};
  std::string bin = "build/bin";
  int clients = 50, requests = 2000, cli_runs = 50;
  app.add_option("--bin", bin, "Directory with vireod and vireo");
  app.add_option("--clients", clients);
  app.add_option("--requests", requests, "Requests per client");
  app.add_option("--cli-runs", cli_runs, "How many times to time `vireo info`");
  CLI11_PARSE(app, argc, argv);

  auto dir = std::filesystem::temp_directory_path() / ("vireo-bench-" + vireo::random_hex(4));
  std::filesystem::create_directories(dir);
  std::string socket = (dir / "vireo.sock").string();
  std::vector<std::string> args = {bin + "/vireod", "--root", (dir / "root").string(),
                                   "--socket",      socket,   "--foreground",
                                   "--log-level",   "warn"};
  std::vector<char*> argvp;
  for (auto& a : args) argvp.push_back(a.data());
  argvp.push_back(nullptr);
  pid_t pid = 0;
  if (::posix_spawn(&pid, argvp[0], nullptr, nullptr, argvp.data(), environ) != 0) {
    fmt::print(stderr, "cannot start {}\n", args[0]);
    return 1;
  }
  for (int i = 0; i < 2000; ++i) {
    int fd = connect_unix(socket);
    if (fd >= 0) {
      ::close(fd);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  long idle_rss = rss_kib(pid);

  auto load = run_load(socket, clients, requests);
  const double total =
      static_cast<double>(load.latencies_us.size() + static_cast<size_t>(load.errors));
  const double rps = static_cast<double>(load.latencies_us.size()) / load.seconds;
  const double p50 = percentile(load.latencies_us, 0.50) / 1000,
               p99 = percentile(load.latencies_us, 0.99) / 1000;
  long loaded_rss = rss_kib(pid);

  auto time_runs = [&](const std::vector<std::string>& argv) {
    std::vector<double> ms;
    for (int i = 0; i < cli_runs; ++i) {
      auto t0 = Clock::now();
      auto r = vireo::run_process(argv);
      if (!r || !r->ok()) {
        fmt::print(stderr, "{} failed\n", argv[0]);
        break;
      }
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms;
  };
  // The cost of starting any process here, to read the CLI's own share against.
  auto baseline_ms = time_runs({"/bin/true"});
  auto cli_ms = time_runs({bin + "/vireo", "--socket", socket, "info"});

  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  std::filesystem::remove_all(dir);

  fmt::print("GET /1.0 over the Unix socket: {} clients x {} requests ({:.0f} total)\n", clients,
             requests, total);
  fmt::print("  errors          {}\n", load.errors);
  fmt::print("  throughput      {:.0f} requests/s   (target >= 20000: {})\n", rps,
             rps >= 20000 ? "ok" : "MISSED");
  fmt::print("  latency p50     {:.2f} ms\n", p50);
  fmt::print("  latency p99     {:.2f} ms           (target < 5 ms: {})\n", p99,
             p99 < 5 ? "ok" : "MISSED");
  fmt::print(
      "vireo info wall time over {} runs: median {:.1f} ms, min {:.1f} ms (target < 15 ms: {})\n",
      cli_ms.size(), percentile(cli_ms, 0.5), cli_ms.empty() ? 0 : cli_ms.front(),
      percentile(cli_ms, 0.5) < 15 ? "ok" : "MISSED");
  fmt::print("  /bin/true started the same way: median {:.1f} ms (vireo's own share: {:.1f} ms)\n",
             percentile(baseline_ms, 0.5), percentile(cli_ms, 0.5) - percentile(baseline_ms, 0.5));
  fmt::print("vireod RSS: idle {:.1f} MiB (target < 20 MiB: {}), after load {:.1f} MiB\n",
             idle_rss / 1024.0, idle_rss < 20 * 1024 ? "ok" : "MISSED", loaded_rss / 1024.0);
  return load.errors == 0 ? 0 : 1;
}
