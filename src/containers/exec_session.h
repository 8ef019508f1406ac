#pragma once
// ExecSession: an interactive process in a running container (`vireo ct exec -i/-t`), started
// by Engine::exec_interactive through `vireo-runtime exec`, which waits for the process and
// exits with its status (128 + signal when it was killed). The owner relays the fds (all
// non-blocking) and polls pidfd() for the end. Destroying a session whose process still runs
// kills it (SIGKILL) and reaps the runtime. Not thread-safe: one owner.
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace vireo::containers {

struct ExecRequest;

enum class ExecTerminal { kPipes, kTty };
enum class ExecInput { kNone, kOpen };

class ExecSession {
 public:
  // runtime: the runtime's argv up to its subcommand (program, --root DIR).
  [[nodiscard]] static Result<std::unique_ptr<ExecSession>> start(
      const std::vector<std::string>& runtime, const std::string& id, const ExecRequest& request,
      ExecTerminal terminal, ExecInput input);
  ~ExecSession();
  ExecSession(const ExecSession&) = delete;
  ExecSession& operator=(const ExecSession&) = delete;

  // With a terminal, its master (input and output); else -1.
  int terminal() const { return pty_.get(); }
  // Without a terminal: the process's stdin (-1 without input) and stdout. stderr() is the
  // process's stderr, and with a terminal the runtime's own errors.
  int stdin_fd() const { return in_.get(); }
  int stdout_fd() const { return out_.get(); }
  int stderr_fd() const { return err_.get(); }
  // The process reads end of file (without a terminal).
  void close_stdin() { in_.reset(); }
  void resize(uint16_t rows, uint16_t cols);
  // Readable once the process (the runtime) has ended.
  int pidfd() const { return pidfd_.get(); }
  // The exit status once the process ended (the runtime reaped), else nullopt.
  std::optional<int> exit_code();
  // SIGKILL to the process (or the runtime while the process is not started yet).
  void kill();

 private:
  ExecSession() = default;

  pid_t pid_ = -1;  // the runtime's exec
  Fd pidfd_;
  std::optional<int> exit_code_;
  Fd pty_, in_, out_, err_;
  std::filesystem::path dir_;  // console socket and pid file
};

}  // namespace vireo::containers
