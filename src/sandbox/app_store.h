#pragma once
// Reading and resetting an app's store from the host side (`vireo app store ls|diff|reset`).
// The store was written by the app, so it is hostile input: it is walked with fd-relative calls
// that never follow a symlink, and nothing outside the store is ever opened for writing.
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "sandbox/app_paths.h"

namespace vireo::sandbox {

enum class ChangeKind { kAdded, kModified, kDeleted, kReplacedDir };

struct StoreChange {
  std::string path;  // as the app sees it: "/etc/app.conf", "~/.apprc"
  ChangeKind kind = ChangeKind::kAdded;
  char type = 'f';  // f file, d directory, l symlink, o other
  uint64_t size = 0;
};

std::string_view to_string(ChangeKind kind);

// One run of an app at a time: two overlays over one store would corrupt it. The lock is held
// while the returned fd (and any copy a child inherits) lives; kConflict when the app runs.
[[nodiscard]] Result<Fd> lock_app(const AppPaths& app);
// Whether a sandbox of the app runs now (someone holds its lock).
bool app_running(const AppPaths& app);

// Every change the app made, sorted by path. A missing store is empty.
[[nodiscard]] Result<std::vector<StoreChange>> list_store(const AppPaths& app);
// A unified diff of every changed regular file against the host, plus one line per deletion,
// new directory or symlink.
[[nodiscard]] Result<std::string> diff_store(const AppPaths& app);
// Forgets the app's changes to path (a system path or "~/..."), or all of them when empty.
[[nodiscard]] Result<void> reset_store(const AppPaths& app, const std::string& path);

}  // namespace vireo::sandbox
