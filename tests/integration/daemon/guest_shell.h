#pragma once
// The test guest's shell on a VM's serial console, through `vireo vm console` on a pseudo
// terminal, and what the VM tests do with it: wait for boots, write and read markers on disks,
// stop the VM when a test ends.
#include <fmt/format.h>

#include <chrono>
#include <string>
#include <thread>

#include "cli_expect.h"
#include "daemon_process.h"
#include "pty_cli.h"

namespace vireo::testing {

using namespace std::chrono_literals;

inline size_t occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

inline std::string console_log(const DaemonProcess& d, const std::string& vm) {
  return d.cli({"vm", "console", vm, "--log"}).out;
}

// The console log has no event to wait on; poll it, bounded: true once the guest has printed
// its READY marker n times (the log spans the VM's boots).
inline bool booted(const DaemonProcess& d, const std::string& vm, size_t n) {
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (occurrences(console_log(d, vm), "VIREO-GUEST-READY") >= n) return true;
    std::this_thread::sleep_for(200ms);
  }
  return false;
}

inline std::string status_of(const DaemonProcess& d, const std::string& vm) {
  return cli_json(d, {"vm", "show", vm}).value("state", Json::object()).value("status", "?");
}

// The guest's shell on the serial console. Each command ends by echoing a token computed by the
// shell (tag-$((n+1))), so the echo of the typed line never matches what is awaited.
class GuestShell {
 public:
  GuestShell(const DaemonProcess& d, const std::string& vm) : pty_(d, {"vm", "console", vm}) {}
  bool ready() { return pty_.started() && pty_.expect("VIREO-GUEST-READY"); }
  // Attached, for a QEMU whose console has printed nothing yet (a restored one).
  bool attached() { return pty_.started() && pty_.expect("Connected to the console"); }
  // Runs cmd; true once the shell printed the token after it.
  bool run(const std::string& cmd) {
    const int n = ++seq_;
    pty_.type(fmt::format("{}; echo \"DONE$(({}+1000))\"\r", cmd, n));
    return pty_.expect(fmt::format("DONE{}", n + 1000), 60s);
  }
  // True when the shell expands expr (in double quotes) to value.
  bool echoes(const std::string& expr, const std::string& value) {
    const int n = ++seq_;
    pty_.type(fmt::format("echo \"E$(({}+3000)):{}\"\r", n, expr));
    return pty_.expect(fmt::format("E{}:{}", n + 3000, value), 60s);
  }
  // The first bytes of a guest block device, as "R<n>:<text>".
  bool shows(const std::string& dev, const std::string& text) {
    const int n = ++seq_;
    pty_.type(fmt::format("echo \"R$(({}+2000)):$(head -c {} {})\"\r", n, text.size(), dev));
    return pty_.expect(fmt::format("R{}:{}", n + 2000, text), 60s);
  }
  std::string output() const { return pty_.output(); }

 private:
  PtyCli pty_;
  // Tokens never repeat in this process: a new console's backlog holds the earlier ones.
  static inline int seq_ = 0;
};

// Stops the VM when the test ends, also after a failed assertion: QEMU runs in its own session
// and would outlive the test's daemon.
struct StopAtEnd {
  const DaemonProcess& d;
  std::string vm;
  ~StopAtEnd() { (void)d.cli({"vm", "stop", vm, "--force"}); }
};

// Writes text at the start of a guest block device and makes it durable.
inline std::string write_marker(const std::string& dev, const std::string& text) {
  return fmt::format("echo {} | dd of={} conv=fsync 2>/dev/null", text, dev);
}

}  // namespace vireo::testing
