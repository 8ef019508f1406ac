#pragma once
// Where an app's virtualized state lives on the host. Root keeps every app under
// /var/lib/vireo/apps/APP, a user under $XDG_DATA_HOME/vireo/apps/APP (default
// ~/.local/share/vireo/apps/APP); VIREO_APPS_DIR overrides both (tests). Inside APP:
//   store/   the writes to redirected system paths (store/etc/foo is the app's /etc/foo)
//   home/    the app's own view of the home directory (its dot-files, or a private home)
//   .work/   overlayfs work directories, .root/ .lower/ .merged/ mount points used while starting
//   app.json the app's settings that outlive a run (extra redirected paths)
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vireo::sandbox {

struct AppPaths {
  std::string name;
  std::string base;  // the folder holding every app
  std::string app, store, home, work, root, lower, merged, settings;
};

// Names are one path component of letters, digits, '.', '_' and '-', not starting with '.'.
[[nodiscard]] Result<void> validate_app_name(std::string_view name);
std::string apps_base();
[[nodiscard]] Result<AppPaths> app_paths(const std::string& name);
// The same below another apps folder (vireod's: STATE_ROOT/apps).
[[nodiscard]] Result<AppPaths> app_paths(const std::string& name, const std::string& base);
// The user's home directory ($HOME, else the password database).
std::string home_directory();

// The system paths whose writes are redirected unless configured otherwise.
const std::vector<std::string>& default_redirected_paths();
// A path given by a user for redirection or reset: absolute, normalized, no "..", no ':' or
// ',' (they separate overlayfs options).
[[nodiscard]] Result<std::string> checked_absolute_path(std::string_view path,
                                                        std::string_view what);

}  // namespace vireo::sandbox
