#pragma once
// Command line of vireo-monitor, parsed by hand (the monitor links no argument library):
//
//   vireo-monitor --id ID --bundle DIR --runtime PATH [--runtime-root DIR] --state-dir DIR
//                 [--tty] [--stdin] [--log-max-size BYTES] [--log-max-files N] [--ready-fd N]
//                 [--netns PATH] [--publish PROTO:HOST_IP:HOST_PORT:CTR_IP:CTR_PORT]...
//
// See docs/containers.md, section "vireo-monitor", for what each option does.
#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace vireo::monitor {

enum class Terminal { kPipes, kTty };
enum class Stdin { kNull, kOpen };
enum class Proto { kTcp, kUdp };

// One published port: HOST_IP:HOST_PORT on the host forwarded to CTR_IP:CTR_PORT in the
// container's network namespace. Addresses are IPv4, in network byte order; ports host order.
struct PublishedPort {
  Proto proto = Proto::kTcp;
  uint32_t host_ip = 0;
  uint16_t host_port = 0;
  uint32_t ctr_ip = 0;
  uint16_t ctr_port = 0;
};

struct Options {
  std::string id;
  std::string bundle;
  std::string runtime;
  std::string runtime_root;  // empty: the runtime's default --root
  std::string state_dir;
  Terminal terminal = Terminal::kPipes;
  Stdin stdin_mode = Stdin::kNull;
  uint64_t log_max_size = 10 * 1024 * 1024;  // bytes per log file; 0 disables rotation
  int log_max_files = 5;                     // ctr.log plus ctr.log.1 .. ctr.log.(N-1)
  int ready_fd = -1;
  std::string netns;  // the container's network namespace file; required with --publish
  std::vector<PublishedPort> publish;

  // Whether attach clients may write to the container (a pipe with --stdin, or the pty).
  bool accepts_input() const { return terminal == Terminal::kTty || stdin_mode == Stdin::kOpen; }
};

// Parses "PROTO:HOST_IP:HOST_PORT:CTR_IP:CTR_PORT"; the error names --publish and the value.
[[nodiscard]] Result<PublishedPort> parse_publish(const std::string& text);

// Parses argv (without argv[0]). Every error names the option: "--log-max-size: not a number".
[[nodiscard]] Result<Options> parse_options(const std::vector<std::string>& args);

// The usage text printed for --help and after an error.
const char* usage();

}  // namespace vireo::monitor
