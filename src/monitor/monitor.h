#pragma once
// Monitor: the per-container process between vireod and the OCI runtime (like Podman's conmon).
// It starts the container through the runtime, owns the container's stdio (pipes, or the pty
// master received over the console socket), writes the logs, serves attach clients, reaps the
// container's init (it is the init's subreaper) and records its exit. It outlives vireod.
//
// Files in the state directory:
//   monitor.pid    the monitor's pid (written by detach())
//   container.pid  the container init's pid (written by the runtime)
//   ctr.log[.N]    the logs (log_writer.h)
//   attach.sock    the attach socket (attach.h), removed at exit
//   runtime.log    the runtime's own log (JSON lines), read for create/start errors
//   monitor.log    the monitor's diagnostics
//   exit.json      written once the container exited, its logs are flushed and its runtime
//                  state deleted; the monitor exits right after
// With --publish, the monitor also proxies the container's published ports (port_proxy.h), from
// before the container is created until it exited.
// Single-threaded: one epoll loop; signals arrive on a signalfd.
#include <sys/types.h>

#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "monitor/attach.h"
#include "monitor/log_writer.h"
#include "monitor/oom.h"
#include "monitor/options.h"
#include "monitor/port_proxy.h"

namespace vireo::monitor {

// Makes the calling process the monitor: forks (the parent exits 0 at once, so the caller is
// not the monitor's parent), starts a new session, becomes a child subreaper, points stdin and
// stdout at /dev/null and stderr at <state-dir>/monitor.log, closes every other inherited fd
// but the ready fd, makes the paths in o absolute and writes <state-dir>/monitor.pid.
// Returns in the monitor process only.
[[nodiscard]] Result<void> detach(Options& o);

// Writes the readiness line to the ready fd (when there is one) and closes it.
void report_ready(Options& o, std::string_view json_line);
std::string ready_error_line(std::string_view message);

class Monitor final : public AttachSink {
 public:
  // Sets up the event loop, the log writer and the attach socket.
  [[nodiscard]] static Result<std::unique_ptr<Monitor>> create(const Options& o);
  ~Monitor() override;

  // Creates and starts the container and reports readiness ({"pid":N} on the ready fd). On
  // failure the container is deleted from the runtime and the error is returned (the caller
  // reports it on the ready fd).
  [[nodiscard]] Result<void> start();
  // Relays output, input and signals until the container's init exits, then writes exit.json
  // and cleans up. Returns the monitor's exit code.
  int run();

  // AttachSink
  void on_stdin(std::string_view data) override;
  void on_resize(uint16_t rows, uint16_t cols) override;
  void on_close_stdin() override;
  std::string on_publish(std::string_view specs) override;

 private:
  explicit Monitor(const Options& o) : o_(o) {}

  // The path of a socket in the state directory that fits in sockaddr_un: the plain path, or
  // one through /proc/<monitor pid>/fd/ when the state directory's path is long. The runtime
  // (same user) can connect to it too.
  std::string socket_path(std::string_view name) const;
  // kKeep adds --log <state-dir>/runtime.log; kDiscard is for a probe whose failure is expected.
  enum class RuntimeLog { kKeep, kDiscard };
  std::vector<std::string> runtime_argv(const std::vector<std::string>& args, RuntimeLog log) const;
  // Runs the runtime to completion; the error carries the runtime's own message.
  [[nodiscard]] Result<void> run_runtime(const std::vector<std::string>& args, int in, int out,
                                         int err, std::string_view what);
  [[nodiscard]] Result<void> start_container();
  [[nodiscard]] Result<void> create_container();
  [[nodiscard]] Result<Fd> receive_pty(int listener);
  void delete_container(bool force);
  [[nodiscard]] Result<void> watch(int fd, uint32_t events);

  void handle_signals();
  void reap();
  // Reads what fd has, up to max_rounds reads; false once it reached end of file (then fd is
  // closed).
  bool read_output(Fd& fd, Stream stream, int max_rounds = 8);
  void write_stdin();
  void update_stdin_interest();
  void close_stdin_pipe();
  void finish();
  std::string exit_json(const timespec& finished, bool oom_killed) const;

  Options o_;
  Fd state_dir_;  // O_PATH
  Fd epoll_;
  Fd signals_;
  std::unique_ptr<LogWriter> log_;
  std::unique_ptr<AttachServer> attach_;
  Fd out_, err_;  // read ends of the container's stdout and stderr pipes
  Fd pty_;        // pty master with --tty
  Fd stdin_;      // write end of the container's stdin pipe with --stdin
  std::string stdin_buf_;
  bool stdin_close_requested_ = false;
  bool log_failed_ = false;
  size_t output_since_trim_ = 0;
  bool owns_container_ = false;  // the runtime's state of o_.id is this monitor's to delete
  pid_t pid_ = 0;                // the container's init
  bool exited_ = false;
  int status_ = 0;
  timespec started_at_{};
  std::optional<OomCounter> oom_;
  uint64_t oom_kills_at_start_ = 0;
  std::unique_ptr<PortProxy> proxy_;  // with --publish
};

}  // namespace vireo::monitor
