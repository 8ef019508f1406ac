#pragma once
// State is what the runtime remembers about one container between invocations: it lives in
// <root>/<id>/state.json and is replaced atomically, so a crash mid-write leaves the old or the
// new file. The live status (running, stopped, paused) is derived from the init process and the
// cgroup, not stored, because the container changes it without the runtime being there.
#include <sys/types.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "container/cgroup.h"
#include "container/config.h"

namespace vireo::container {

enum class Status { kCreating, kCreated, kRunning, kPaused, kStopped };
std::string_view to_string(Status s);

struct State {
  std::string id;
  Status saved_status = Status::kCreating;  // creating or created; the rest is derived
  pid_t pid = 0;
  uint64_t start_time = 0;  // of pid, in clock ticks since boot (tells a reused pid apart)
  std::filesystem::path bundle;
  std::filesystem::path rootfs;
  std::string created;  // RFC 3339
  std::map<std::string, std::string> annotations;
  Json cgroup;  // Cgroup::to_json()
  std::vector<Hook> poststop;
  bool systemd_cgroup = false;

  Json to_json() const;
  static Result<State> from_json(const Json& j);
};

// The directory of one container's state under the runtime root.
class StateDir {
 public:
  StateDir(std::filesystem::path root, std::string id);

  // IDs are used as path components and cgroup names: 1-1024 of [A-Za-z0-9_.+-], not "." or "..".
  [[nodiscard]] static Result<void> validate_id(std::string_view id);

  // Creates the directory; fails with kAlreadyExists when the ID is taken.
  [[nodiscard]] Result<void> create() const;
  [[nodiscard]] Result<State> load() const;
  [[nodiscard]] Result<void> save(const State& s) const;
  void remove() const;

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path fifo() const { return dir_ / "exec.fifo"; }

 private:
  std::filesystem::path dir_;
  std::string id_;
};

// The status right now: stopped when the init is gone (or a zombie, or the pid was reused),
// created while the exec fifo exists, paused when the cgroup is frozen, else running.
Status current_status(const State& s, const StateDir& dir);

// The state as the OCI spec prints it (`state` command, hooks' stdin).
Json oci_state(const State& s, Status status);

// All container IDs under root, sorted.
std::vector<std::string> list_ids(const std::filesystem::path& root);

}  // namespace vireo::container
