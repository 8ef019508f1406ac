#include "container/mount_options.h"

#include <sys/mount.h>

#include <algorithm>
#include <string_view>

namespace vireo::container {

namespace {

struct FlagOption {
  std::string_view name;
  bool clear;
  unsigned long flag;
};

constexpr FlagOption kFlags[] = {
    {"ro", false, MS_RDONLY},
    {"rw", true, MS_RDONLY},
    {"suid", true, MS_NOSUID},
    {"nosuid", false, MS_NOSUID},
    {"dev", true, MS_NODEV},
    {"nodev", false, MS_NODEV},
    {"exec", true, MS_NOEXEC},
    {"noexec", false, MS_NOEXEC},
    {"sync", false, MS_SYNCHRONOUS},
    {"async", true, MS_SYNCHRONOUS},
    {"dirsync", false, MS_DIRSYNC},
    {"remount", false, MS_REMOUNT},
    {"mand", false, MS_MANDLOCK},
    {"nomand", true, MS_MANDLOCK},
    {"atime", true, MS_NOATIME},
    {"noatime", false, MS_NOATIME},
    {"diratime", true, MS_NODIRATIME},
    {"nodiratime", false, MS_NODIRATIME},
    {"bind", false, MS_BIND},
    {"rbind", false, MS_BIND | MS_REC},
    {"relatime", false, MS_RELATIME},
    {"norelatime", true, MS_RELATIME},
    {"strictatime", false, MS_STRICTATIME},
    {"nostrictatime", true, MS_STRICTATIME},
    {"silent", false, MS_SILENT},
    {"loud", true, MS_SILENT},
    {"iversion", false, MS_I_VERSION},
    {"noiversion", true, MS_I_VERSION},
    {"lazytime", false, MS_LAZYTIME},
    {"nolazytime", true, MS_LAZYTIME},
};

struct PropagationOption {
  std::string_view name;
  unsigned long flag;
};

constexpr PropagationOption kPropagation[] = {
    {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
    {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
    {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
    {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
};

struct AttrOption {
  std::string_view name;
  bool clear;
  unsigned long long attr;
};

// The recursive variants (mount_setattr with AT_RECURSIVE) from runtime spec 1.1.
constexpr AttrOption kAttrs[] = {
    {"rro", false, MOUNT_ATTR_RDONLY},
    {"rrw", true, MOUNT_ATTR_RDONLY},
    {"rnosuid", false, MOUNT_ATTR_NOSUID},
    {"rsuid", true, MOUNT_ATTR_NOSUID},
    {"rnodev", false, MOUNT_ATTR_NODEV},
    {"rdev", true, MOUNT_ATTR_NODEV},
    {"rnoexec", false, MOUNT_ATTR_NOEXEC},
    {"rexec", true, MOUNT_ATTR_NOEXEC},
    {"rnodiratime", false, MOUNT_ATTR_NODIRATIME},
    {"rdiratime", true, MOUNT_ATTR_NODIRATIME},
    {"rnosymfollow", false, MOUNT_ATTR_NOSYMFOLLOW},
    {"rsymfollow", true, MOUNT_ATTR_NOSYMFOLLOW},
};

}  // namespace

bool MountOptions::bind() const {
  return flags & MS_BIND;
}
bool MountOptions::recursive_bind() const {
  return (flags & MS_BIND) && (flags & MS_REC);
}

Result<MountOptions> parse_mount_options(const std::vector<std::string>& options) {
  MountOptions out;
  for (const auto& opt : options) {
    if (auto* f = std::find_if(std::begin(kFlags), std::end(kFlags),
                               [&](const FlagOption& x) { return x.name == opt; });
        f != std::end(kFlags)) {
      if (f->clear)
        out.flags &= ~f->flag;
      else
        out.flags |= f->flag;
      continue;
    }
    if (auto* p = std::find_if(std::begin(kPropagation), std::end(kPropagation),
                               [&](const PropagationOption& x) { return x.name == opt; });
        p != std::end(kPropagation)) {
      out.propagation.push_back(p->flag);
      continue;
    }
    if (auto* a = std::find_if(std::begin(kAttrs), std::end(kAttrs),
                               [&](const AttrOption& x) { return x.name == opt; });
        a != std::end(kAttrs)) {
      if (a->clear)
        out.attr_clr |= a->attr;
      else
        out.attr_set |= a->attr;
      continue;
    }
    if (opt == "idmap" || opt == "ridmap")
      return make_error(ErrorCode::kInvalidArgument, "mount option \"{}\" is not supported", opt);
    if (opt == "tmpcopyup") continue;  // a runc extension with no kernel meaning; ignored
    if (!out.data.empty()) out.data += ",";
    out.data += opt;
  }
  return out;
}

unsigned long remount_flags(unsigned long flags) {
  return flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME |
                  MS_RELATIME | MS_STRICTATIME | MS_SYNCHRONOUS | MS_MANDLOCK);
}

}  // namespace vireo::container
