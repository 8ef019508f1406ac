#include "image/rootfs.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <charconv>

#include "base/fd.h"
#include "base/file.h"
#include "image/image_store.h"
#include "image/tree.h"

namespace vireo::image {

namespace fs = std::filesystem;

namespace {

// overlayfs takes its options as one string of at most a page.
constexpr size_t kMaxMountData = 4000;

std::optional<uint32_t> parse_id(std::string_view s) {
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// The topmost layer's copy of a small text file (etc/passwd), if any layer has one.
std::optional<std::string> read_image_file(const std::vector<Layer>& layers, std::string_view p) {
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
    Fd root(::open(it->dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root) continue;
    auto fd = open_in_root(root.get(), p, O_RDONLY);
    if (!fd) continue;
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd->get(), buf, sizeof buf)) > 0 && out.size() < (1 << 20))
      out.append(buf, static_cast<size_t>(n));
    return out;
  }
  return std::nullopt;
}

// Field 2 (the id) and 3 (passwd's gid) of the line of name in a passwd/group file.
std::optional<std::pair<uint32_t, std::optional<uint32_t>>> lookup(const std::string& file,
                                                                   std::string_view name) {
  size_t start = 0;
  while (start < file.size()) {
    size_t end = file.find('\n', start);
    if (end == std::string::npos) end = file.size();
    std::string_view line(file.data() + start, end - start);
    start = end + 1;
    std::vector<std::string_view> f;
    for (size_t b = 0; f.size() < 4;) {
      size_t c = line.find(':', b);
      f.push_back(line.substr(b, c == std::string_view::npos ? std::string_view::npos : c - b));
      if (c == std::string_view::npos) break;
      b = c + 1;
    }
    if (f.size() < 3 || f[0] != name) continue;
    auto id = parse_id(f[2]);
    if (!id) return std::nullopt;
    return std::make_pair(*id, f.size() > 3 ? parse_id(f[3]) : std::nullopt);
  }
  return std::nullopt;
}

Result<void> resolve_user(ProcessConfig& p, const std::vector<Layer>& layers) {
  if (p.user.empty()) {
    p.uid = 0;
    p.gid = 0;
    return {};
  }
  auto colon = p.user.find(':');
  std::string user = p.user.substr(0, colon);
  std::string group = colon == std::string::npos ? "" : p.user.substr(colon + 1);
  if (auto id = parse_id(user)) {
    p.uid = *id;
    p.gid = 0;
  } else {
    auto passwd = read_image_file(layers, "etc/passwd");
    auto entry = passwd ? lookup(*passwd, user) : std::nullopt;
    if (!entry)
      return make_error(ErrorCode::kInvalidArgument, "user '{}' is not in the image's /etc/passwd",
                        user);
    p.uid = entry->first;
    p.gid = entry->second.value_or(0);
  }
  if (group.empty()) return {};
  if (auto id = parse_id(group)) {
    p.gid = *id;
    return {};
  }
  auto groups = read_image_file(layers, "etc/group");
  auto entry = groups ? lookup(*groups, group) : std::nullopt;
  if (!entry)
    return make_error(ErrorCode::kInvalidArgument, "group '{}' is not in the image's /etc/group",
                      group);
  p.gid = entry->first;
  return {};
}

Result<void> set_string(int fs_fd, const char* key, const std::string& value) {
  if (::fsconfig(fs_fd, FSCONFIG_SET_STRING, key, value.c_str(), 0) != 0)
    return errno_error(fmt::format("overlay {}={}", key, value));
  return {};
}

// The new mount API takes the lower directories one by one ("lowerdir+", Linux 6.8), so any
// number of layers fits, where mount(2)'s option string is limited to a page.
Result<void> mount_overlay_fsconfig(const std::vector<Layer>& bottom_first, const fs::path& upper,
                                    const fs::path& work, const fs::path& target) {
  Fd fs_fd(::fsopen("overlay", FSOPEN_CLOEXEC));
  if (!fs_fd) return errno_error("fsopen overlay");
  for (const auto& dir : overlay_lower_dirs(bottom_first))
    TRY_CTX(set_string(fs_fd.get(), "lowerdir+", dir.string()),
            "{} layers need lowerdir+ (Linux 6.8)", bottom_first.size());
  TRY(set_string(fs_fd.get(), "upperdir", upper.string()));
  TRY(set_string(fs_fd.get(), "workdir", work.string()));
  if (::fsconfig(fs_fd.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
    return errno_error("create overlay");
  Fd mnt(::fsmount(fs_fd.get(), FSMOUNT_CLOEXEC, 0));
  if (!mnt) return errno_error("fsmount overlay");
  if (::move_mount(mnt.get(), "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
    return errno_error(fmt::format("mount overlay on {}", target.string()));
  return {};
}

}  // namespace

std::vector<fs::path> overlay_lower_dirs(const std::vector<Layer>& bottom_first) {
  std::vector<fs::path> out;
  for (auto it = bottom_first.rbegin(); it != bottom_first.rend(); ++it) out.push_back(it->dir);
  return out;
}

Result<void> mount_overlay(const std::vector<Layer>& bottom_first, const fs::path& upper,
                           const fs::path& work, const fs::path& target) {
  if (bottom_first.empty())
    return make_error(ErrorCode::kInvalidArgument, "an image without layers cannot be mounted");
  std::string lower;
  for (const auto& l : bottom_first) {
    if (l.has_pending_markers())
      return make_error(ErrorCode::kConflict,
                        "layer {} was unpacked without privileges: its whiteouts are not overlay "
                        "markers; flatten instead",
                        l.diff_id.str());
  }
  for (const auto& dir : overlay_lower_dirs(bottom_first)) {
    if (dir.string().find_first_of(":,") != std::string::npos)
      return make_error(ErrorCode::kInvalidArgument, "overlay paths must not contain ':' or ','");
    lower += (lower.empty() ? "" : ":") + dir.string();
  }
  std::string data =
      fmt::format("lowerdir={},upperdir={},workdir={}", lower, upper.string(), work.string());
  for (const auto& p : {upper.string(), work.string(), lower})
    if (p.find(',') != std::string::npos)
      return make_error(ErrorCode::kInvalidArgument, "overlay paths must not contain ','");
  if (data.size() > kMaxMountData) return mount_overlay_fsconfig(bottom_first, upper, work, target);
  if (::mount("overlay", target.c_str(), "overlay", 0, data.c_str()) != 0)
    return errno_error(fmt::format("mount overlay on {}", target.string()));
  return {};
}

Result<ProcessConfig> process_config(const ImageConfig& config,
                                     const std::vector<Layer>& bottom_first) {
  ProcessConfig p;
  p.args = config.entrypoint;
  p.args.insert(p.args.end(), config.cmd.begin(), config.cmd.end());
  if (p.args.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "the image has neither Entrypoint nor Cmd: give a command");
  p.env = config.env;
  if (!config.working_dir.empty()) p.cwd = config.working_dir;
  if (!p.cwd.starts_with('/'))
    return make_error(ErrorCode::kInvalidArgument, "WorkingDir '{}' is not absolute", p.cwd);
  p.user = config.user;
  TRY(resolve_user(p, bottom_first));
  return p;
}

void apply_process_config(const ProcessConfig& p, Json& spec) {
  Json& process = spec["process"];
  process["args"] = p.args;
  process["env"] = p.env;
  process["cwd"] = p.cwd;
  if (p.uid) process["user"]["uid"] = *p.uid;
  if (p.gid) process["user"]["gid"] = *p.gid;
}

Result<PreparedRootfs> ImageStore::prepare_rootfs(std::string_view ref, const fs::path& dest,
                                                  RootfsMode mode) {
  std::lock_guard lock(mu_);
  ImageInfo image = TRY(load_image(TRY(resolve(ref))));
  std::vector<Layer> layers = TRY(unpack_layers(image));
  PreparedRootfs out;
  out.process = TRY(process_config(image.config, layers));
  out.rootfs = dest / "rootfs";
  out.lower_dirs = overlay_lower_dirs(layers);
  bool pending = std::any_of(layers.begin(), layers.end(),
                             [](const Layer& l) { return l.has_pending_markers(); });
  if (mode == RootfsMode::kAuto)
    mode = (privileged_ && !pending) ? RootfsMode::kOverlay : RootfsMode::kCopy;
  TRY(make_dirs(out.rootfs, 0755));
  if (mode == RootfsMode::kCopy) {
    TRY(flatten_layers(layers, out.rootfs, privileged_));
    return out;
  }
  TRY(make_dirs(dest / "upper", 0755));
  TRY(make_dirs(dest / "work", 0700));
  TRY(mount_overlay(layers, dest / "upper", dest / "work", out.rootfs));
  out.overlay = true;
  return out;
}

Result<void> release_rootfs(const fs::path& dest) {
  // An overlay has a device of its own: a rootfs on dest's device is a copy, not a mount.
  struct stat outer, inner;
  fs::path rootfs = dest / "rootfs";
  bool mounted = ::stat(dest.c_str(), &outer) == 0 && ::stat(rootfs.c_str(), &inner) == 0 &&
                 outer.st_dev != inner.st_dev;
  if (mounted && ::umount2(rootfs.c_str(), MNT_DETACH) != 0)
    return errno_error(fmt::format("unmount {}", rootfs.string()));
  return remove_tree(dest);
}

}  // namespace vireo::image
