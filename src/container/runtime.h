#pragma once
// Runtime implements the OCI lifecycle operations on the containers under one state root. Each
// method is one CLI command; state lives on disk (StateDir), so separate runtime processes can
// act on the same container one after another. Not thread-safe; concurrent commands on the same
// container are not serialized (as with runc without its lock file).
#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "container/config.h"
#include "container/exec.h"
#include "container/state.h"

namespace vireo::container {

struct CreateOptions {
  std::filesystem::path bundle = ".";
  std::string pid_file;
  std::string console_socket;
  bool no_pivot = false;
  int preserve_fds = 0;
};

struct RuntimeOptions {
  std::filesystem::path root = "/run/vireo-runtime";
  bool systemd_cgroup = false;
};

class Runtime {
 public:
  // A relative root is made absolute now: create changes into the bundle directory.
  explicit Runtime(RuntimeOptions options) : options_(std::move(options)) {
    options_.root = std::filesystem::absolute(options_.root);
  }

  [[nodiscard]] Result<void> create(const std::string& id, const CreateOptions& o);
  [[nodiscard]] Result<void> start(const std::string& id);
  // create + start + wait; returns the exit status to propagate (128+signal when killed).
  // With detach, returns 0 once started.
  [[nodiscard]] Result<int> run(const std::string& id, const CreateOptions& o, bool detach);
  [[nodiscard]] Result<Json> state(const std::string& id);
  [[nodiscard]] Result<void> kill(const std::string& id, int sig, bool all);
  [[nodiscard]] Result<void> remove(const std::string& id, bool force);
  [[nodiscard]] Result<std::vector<Json>> list();
  [[nodiscard]] Result<std::vector<pid_t>> ps(const std::string& id);
  [[nodiscard]] Result<void> pause(const std::string& id);
  [[nodiscard]] Result<void> resume(const std::string& id);
  [[nodiscard]] Result<void> update(const std::string& id, const Resources& r);
  // Runs another process in a running container; its exit status (0 when detached).
  [[nodiscard]] Result<int> exec(const std::string& id, const ExecOptions& o);

 private:
  struct Loaded {
    State state;
    Status status;
  };
  [[nodiscard]] Result<Loaded> load(const std::string& id);
  // The pid of the init, spawned and set up; fills state. Leaves cleanup to the caller's rollback.
  [[nodiscard]] Result<void> spawn_init(const Config& c, const CreateOptions& o,
                                        const StateDir& dir, class Cgroup& cg, State& state);
  [[nodiscard]] Result<void> destroy(const State& s, const StateDir& dir);

  RuntimeOptions options_;
};

// "KILL", "SIGKILL", "9" → 9.
[[nodiscard]] Result<int> parse_signal(std::string_view text);

}  // namespace vireo::container
