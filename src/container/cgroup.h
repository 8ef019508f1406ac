#pragma once
// Cgroup is one container's cgroup on the host, on a cgroup v2 (unified), v1 or hybrid host.
// It owns nothing in memory: the directories it names live until destroy(). Its paths are saved
// in the container state (to_json/from_json) so that later runtime invocations (update, pause,
// kill --all, delete) act on the same directories. Not thread-safe; none of it needs to be.
#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "container/config.h"

namespace vireo::container {

enum class CgroupMode { kUnified, kLegacy, kHybrid };

class Cgroup {
 public:
  Cgroup() = default;

  static CgroupMode detect_mode();

  // Resolves cgroups_path (absolute, relative to the runtime's own cgroup, or systemd
  // "slice:prefix:name" when systemd is set; empty means /vireo-runtime/<id>) to the per-hierarchy
  // directories. Creates nothing.
  [[nodiscard]] static Result<Cgroup> resolve(const std::string& cgroups_path,
                                              const std::string& id, bool systemd);
  [[nodiscard]] static Result<Cgroup> from_json(const Json& j);
  Json to_json() const;

  // Creates the directories (and parents) and enables the v2 controllers on the way.
  [[nodiscard]] Result<void> create();
  [[nodiscard]] Result<void> apply(const Resources& r);
  [[nodiscard]] Result<void> add_process(pid_t pid);
  // An O_PATH|O_DIRECTORY fd for clone3(CLONE_INTO_CGROUP) on a unified host, else -1.
  [[nodiscard]] Result<int> unified_fd() const;
  [[nodiscard]] Result<std::vector<pid_t>> pids() const;
  [[nodiscard]] Result<void> freeze(bool frozen);
  [[nodiscard]] Result<bool> frozen() const;
  // Removes the container's directories (not shared parents). Missing ones are fine.
  [[nodiscard]] Result<void> destroy();

  // Forgets the directories: the container then runs without a cgroup (rootless without a
  // delegated subtree). Every call becomes a no-op, or an error for those that need one.
  void disable();
  bool enabled() const { return !unified_.empty() || !legacy_.empty(); }

  CgroupMode mode() const { return mode_; }
  // The directory of a v1 controller ("memory") or, on a unified host, the one directory.
  std::string path_of(const std::string& controller) const;
  const std::string& unified_path() const { return unified_; }
  // v1 directory → the controllers mounted together there ("cpu,cpuacct").
  std::map<std::string, std::string> legacy_dirs() const;

 private:
  [[nodiscard]] Result<void> apply_v1(const Resources& r);
  [[nodiscard]] Result<void> apply_v2(const Resources& r);

  CgroupMode mode_ = CgroupMode::kUnified;
  std::string unified_;                        // v2 directory (unified mode)
  std::map<std::string, std::string> legacy_;  // v1 controller → directory
};

}  // namespace vireo::container
