#include "sandbox/app_paths.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>

#include "base/strings.h"

namespace vireo::sandbox {

Result<void> validate_app_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '.' || name.front() == '-')
    return make_error(ErrorCode::kInvalidArgument,
                      "app name '{}': use 1-64 letters, digits, '.', '_' or '-', not starting "
                      "with '.' or '-'",
                      name);
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok)
      return make_error(ErrorCode::kInvalidArgument,
                        "app name '{}': only letters, digits, '.', '_' and '-' are allowed", name);
  }
  return {};
}

std::string home_directory() {
  if (const char* home = std::getenv("HOME"); home && home[0] == '/') return home;
  if (const passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir) return pw->pw_dir;
  return "/";
}

std::string apps_base() {
  if (const char* dir = std::getenv("VIREO_APPS_DIR"); dir && dir[0] == '/') return dir;
  if (::geteuid() == 0) return "/var/lib/vireo/apps";
  if (const char* data = std::getenv("XDG_DATA_HOME"); data && data[0] == '/')
    return std::string(data) + "/vireo/apps";
  return home_directory() + "/.local/share/vireo/apps";
}

Result<AppPaths> app_paths(const std::string& name) {
  return app_paths(name, apps_base());
}

Result<AppPaths> app_paths(const std::string& name, const std::string& base) {
  TRY(validate_app_name(name));
  AppPaths p;
  p.name = name;
  p.base = base;
  TRY(checked_absolute_path(p.base, "the apps folder"));
  p.app = p.base + "/" + name;
  p.store = p.app + "/store";
  p.home = p.app + "/home";
  p.work = p.app + "/.work";
  p.root = p.app + "/.root";
  p.lower = p.app + "/.lower";
  p.merged = p.app + "/.merged";
  p.settings = p.app + "/app.json";
  return p;
}

const std::vector<std::string>& default_redirected_paths() {
  static const std::vector<std::string> paths = {"/usr", "/etc", "/opt", "/var", "/srv"};
  return paths;
}

Result<std::string> checked_absolute_path(std::string_view path, std::string_view what) {
  if (path.empty() || path.front() != '/')
    return make_error(ErrorCode::kInvalidArgument, "{} '{}' must be an absolute path", what, path);
  if (path.find_first_of(":,\n") != std::string_view::npos)
    return make_error(ErrorCode::kInvalidArgument, "{} '{}' must not contain ':', ',' or newlines",
                      what, path);
  std::string normalized;
  for (const auto& part : split(path, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..")
      return make_error(ErrorCode::kInvalidArgument, "{} '{}' must not contain '..'", what, path);
    normalized += "/" + part;
  }
  return normalized.empty() ? std::string("/") : normalized;
}

}  // namespace vireo::sandbox
