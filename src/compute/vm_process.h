#pragma once
// VmProcess runs one QEMU for one VM and is the daemon's handle on it.
//
// Everything about a running VM lives in its run directory, so that a restarted daemon can find
// it again with attach():
//   qmp.sock  QMP control socket        console.sock  serial console (QEMU listens)
//   qemu.pid  pidfile written by QEMU   qemu.log      QEMU's stdout/stderr (qemu.log.1: previous)
//   console.log  bounded serial output (ConsoleLog)
// QEMU runs in its own session (setsid), started paused (-S): the runner connects QMP and the
// console log before the guest's first instruction, then resumes it. Destroying a VmProcess
// detaches from QEMU and leaves the VM running; only stop()/kill() end it.
//
// Exit detection uses a pidfd. The process that started QEMU is its parent and also learns the
// exit status; after a re-attach the status is unknown (QEMU was re-parented), but the QMP
// SHUTDOWN reason and the log tail still say what happened.
// One watcher thread per object; all public methods are thread-safe. Callbacks run on internal
// threads, must return quickly, and must neither call stop() nor destroy the VmProcess.
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "base/fd.h"
#include "base/result.h"
#include "compute/console_log.h"
#include "compute/qmp_client.h"
#include "compute/vm_spec.h"

namespace vireo::compute {

// The files of one VM's run directory.
struct RunDir {
  std::filesystem::path dir;
  std::filesystem::path qmp_socket() const { return dir / "qmp.sock"; }
  std::filesystem::path console_socket() const { return dir / "console.sock"; }
  std::filesystem::path pidfile() const { return dir / "qemu.pid"; }
  std::filesystem::path log() const { return dir / "qemu.log"; }
  std::filesystem::path console_log() const { return dir / "console.log"; }
};

struct ExitInfo {
  bool status_known = false;    // false when QEMU was not our child (re-attached)
  int exit_code = -1;           // when it exited normally
  int term_signal = 0;          // when a signal killed it
  std::string shutdown_reason;  // from QMP SHUTDOWN: "guest-shutdown", "host-qmp-quit", ...
  std::string log_tail;         // the last lines of qemu.log
  // One line: "exited with status 0 (guest-shutdown)", "killed by signal 9", ...
  std::string describe() const;
};

struct VmProcessOptions {
  std::string qemu_binary = "qemu-system-x86_64";
  std::chrono::milliseconds start_timeout{10000};  // until QMP answers
  std::function<void(const QmpEvent&)> on_event;   // every QMP event
  std::function<void(const ExitInfo&)> on_exit;    // once, when QEMU is gone, before wait_exit()
                                                   // returns (so it must not wait_exit())
  // Start with -incoming defer and leave the guest paused: the caller loads a saved state
  // (migrate-incoming) and resumes it.
  bool incoming = false;
};

enum class StopMode { kGraceful, kForce };

class VmProcess {
 public:
  // Validates spec, starts QEMU in run_dir (created 0700) and returns once the guest runs.
  // Fails with nothing left running when QEMU exits early; the error carries its log tail.
  [[nodiscard]] static Result<std::unique_ptr<VmProcess>> start(
      const VmSpec& spec, const std::filesystem::path& run_dir, VmProcessOptions options = {});
  // Re-attaches to the QEMU that runs from run_dir (pidfile + QMP socket). kNotFound when none
  // runs there any more, with the log tail in the message. A QEMU whose starter died before
  // resuming it (still in "prelaunch") is resumed.
  [[nodiscard]] static Result<std::unique_ptr<VmProcess>> attach(
      const std::filesystem::path& run_dir, VmProcessOptions options = {});

  VmProcess(const VmProcess&) = delete;
  VmProcess& operator=(const VmProcess&) = delete;
  ~VmProcess();  // detaches; the VM keeps running

  // Graceful: ACPI power button (system_powerdown), then after timeout QMP quit, then SIGKILL.
  // Force: QMP quit, then SIGKILL. Returns how QEMU ended.
  [[nodiscard]] Result<ExitInfo> stop(StopMode mode, std::chrono::milliseconds timeout);
  [[nodiscard]] Result<void> pause();
  [[nodiscard]] Result<void> resume();
  // device_del, then waits for QEMU's DEVICE_DELETED: the guest must let the device go (a PCIe
  // unplug takes it about 5 s: the attention button's grace period). kTimeout when it does not.
  [[nodiscard]] Result<void> delete_device(const std::string& id,
                                           std::chrono::milliseconds timeout);
  // QMP query-status "status": "running", "paused", "shutdown", ...
  [[nodiscard]] Result<std::string> status();
  // Waits for QEMU to exit; nullopt on timeout.
  std::optional<ExitInfo> wait_exit(std::chrono::milliseconds timeout);
  bool exited() const;

  pid_t pid() const { return pid_; }
  const RunDir& run_dir() const { return run_dir_; }
  QmpClient& qmp() { return *qmp_; }
  // The console log; null when the console could not be connected (another client holds it).
  ConsoleLog* console() { return console_.get(); }

 private:
  VmProcess(RunDir run_dir, pid_t pid, Fd pidfd, VmProcessOptions options);
  Result<void> connect_qmp(std::chrono::steady_clock::time_point deadline);
  Result<void> resume_if_prelaunch();
  void connect_console();
  void watch();
  void on_qmp_event(const QmpEvent& event);
  ExitInfo collect_exit();
  Result<void> send_signal(int sig);
  void kill_and_reap();

  RunDir run_dir_;
  pid_t pid_;
  Fd pidfd_;
  Fd stop_watch_;  // eventfd that ends the watcher thread
  VmProcessOptions options_;
  std::unique_ptr<QmpClient> qmp_;
  std::unique_ptr<ConsoleLog> console_;

  mutable std::mutex mutex_;
  std::condition_variable exited_cv_;
  std::optional<ExitInfo> exit_;           // guarded by mutex_
  std::string shutdown_reason_;            // guarded by mutex_
  std::set<std::string> deleted_devices_;  // DEVICE_DELETED ids not yet awaited; mutex_
  std::condition_variable deleted_cv_;
  std::thread watcher_;
};

// The last `lines` lines of a file ("" when unreadable).
std::string tail_lines(const std::filesystem::path& path, int lines);

}  // namespace vireo::compute
