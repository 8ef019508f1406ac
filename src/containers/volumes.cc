// Named volumes in containers: mounted through the VolumeBackend at create (and again at a
// start after a host reboot), populated from the image on first use, bind-mounted into the
// container, unmounted when the last container using them is removed.
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "containers/engine_impl.h"

namespace vireo::containers {

namespace fs = std::filesystem;

namespace {

// target inside rootfs when no component of it is a symlink (an image's symlink could point
// the copy at the host's own files); nullopt otherwise or when it does not exist.
std::optional<fs::path> plain_path_in(const fs::path& rootfs, const std::string& target) {
  fs::path p = rootfs;
  for (const auto& part : fs::path(target).relative_path()) {
    if (part == ".." || part == ".") return std::nullopt;
    p /= part;
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0 || S_ISLNK(st.st_mode)) return std::nullopt;
  }
  return p;
}

// A fresh volume gets what the image has at the target, with its owner and mode (as Docker
// does), or else the container user's ownership, so a non-root user can write to it.
Result<void> populate(const fs::path& volume, const fs::path& rootfs, const BindMount& m,
                      const Json& spec) {
  auto source = plain_path_in(rootfs, m.target);
  struct stat st {};
  if (source && ::stat(source->c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    auto r = TRY(run_process({"cp", "-a", "--", source->string() + "/.", volume.string()},
                             {.timeout = std::chrono::minutes(10)}));
    if (!r.ok())
      return make_error(ErrorCode::kIo, "copy the image's {} into volume {}: {}", m.target,
                        m.volume, std::string(trim(r.err)));
    if (::chown(volume.c_str(), st.st_uid, st.st_gid) != 0 ||
        ::chmod(volume.c_str(), st.st_mode & 07777) != 0)
      return errno_error("set the owner of volume " + m.volume);
    return {};
  }
  const Json& user = spec["process"]["user"];
  uid_t uid = user.value("uid", 0u);
  gid_t gid = user.value("gid", 0u);
  if (::chown(volume.c_str(), uid, gid) != 0) return errno_error("chown volume " + m.volume);
  return {};
}

Json volume_mount(const BindMount& m, const fs::path& source) {
  return Json{{"destination", m.target},
              {"type", "bind"},
              {"source", source.string()},
              {"options", {"rbind", m.read_only ? "ro" : "rw"}}};
}

}  // namespace

Result<void> Engine::Impl::mount_volumes(const Record& r, const CreateRequest& req, Json& spec,
                                         const fs::path& rootfs, Rollback& undo) {
  for (const auto& m : req.mounts) {
    if (m.volume.empty()) continue;
    if (!o.volumes)
      return make_error(ErrorCode::kUnavailable,
                        "volume {}: named volumes are not available here; bind a host path",
                        m.volume);
    auto mounted = TRY_CTX(o.volumes->acquire(m.volume), "volume {}", m.volume);
    undo.add([this, &r, volume = m.volume] {
      std::lock_guard lock(mu);
      bool used = std::any_of(by_id.begin(), by_id.end(), [&](const auto& e) {
        return e.second.get() != &r && !e.second->removed &&
               std::any_of(e.second->req.mounts.begin(), e.second->req.mounts.end(),
                           [&](const BindMount& b) { return b.volume == volume; });
      });
      if (!used) o.volumes->release(volume);
    });
    if (mounted.fresh) TRY(populate(mounted.path, rootfs, m, spec));
    spec["mounts"].push_back(volume_mount(m, mounted.path));
  }
  return {};
}

Result<void> Engine::Impl::ensure_volumes(const Record& r) {
  for (const auto& m : r.req.mounts) {
    if (m.volume.empty()) continue;
    if (!o.volumes)
      return make_error(ErrorCode::kUnavailable, "volume {}: named volumes are not available",
                        m.volume);
    TRY_CTX(o.volumes->acquire(m.volume), "volume {}", m.volume);
  }
  return {};
}

void Engine::Impl::release_volumes(const Record& r) {
  if (!o.volumes) return;
  for (const auto& m : r.req.mounts) {
    if (m.volume.empty()) continue;
    bool used = false;
    {
      std::lock_guard lock(mu);
      for (const auto& [id, other] : by_id)
        for (const auto& b : other->req.mounts)
          used = used || (other.get() != &r && !other->removed && b.volume == m.volume);
    }
    if (!used) o.volumes->release(m.volume);
  }
}

}  // namespace vireo::containers
