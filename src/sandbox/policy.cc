#include "sandbox/policy.h"

#include <sys/prctl.h>

#include <cerrno>

#include "container/config.h"
#include "container/default_spec.h"
#include "container/process_setup.h"
#include "container/seccomp.h"

namespace vireo::sandbox {

namespace {

constexpr uint64_t kPtraceAttach = 16, kPtraceSeize = 0x4206;

container::SeccompRule deny(std::vector<std::string> names) {
  return {std::move(names), "SCMP_ACT_ERRNO", EPERM, {}};
}

container::Seccomp seccomp_for(Profile profile) {
  container::Seccomp s;
  s.default_action = "SCMP_ACT_ALLOW";
  s.syscalls.push_back(deny({"init_module",
                             "finit_module",
                             "delete_module",
                             "kexec_load",
                             "kexec_file_load",
                             "mount",
                             "umount2",
                             "pivot_root",
                             "move_mount",
                             "open_tree",
                             "fsopen",
                             "fsmount",
                             "fsconfig",
                             "fspick",
                             "mount_setattr",
                             "bpf",
                             "keyctl",
                             "add_key",
                             "request_key",
                             "reboot",
                             "swapon",
                             "swapoff",
                             "acct",
                             "quotactl",
                             "syslog",
                             "iopl",
                             "ioperm",
                             "settimeofday",
                             "clock_settime",
                             "clock_adjtime",
                             "adjtimex",
                             "open_by_handle_at",
                             "name_to_handle_at",
                             "lookup_dcookie",
                             "perf_event_open",
                             "userfaultfd",
                             "vhangup",
                             "process_vm_writev",
                             "kcmp"}));
  for (uint64_t request : {kPtraceAttach, kPtraceSeize})
    s.syscalls.push_back({{"ptrace"}, "SCMP_ACT_ERRNO", EPERM, {{0, request, 0, "SCMP_CMP_EQ"}}});
  if (profile == Profile::kStrict)
    s.syscalls.push_back(deny({"ptrace", "process_vm_readv", "personality", "setns", "unshare"}));
  return s;
}

container::Capabilities default_root_capabilities() {
  container::Capabilities caps;
  for (const auto& name : container::default_capabilities()) {
    int c = container::capability_from_name(name.get<std::string>());
    if (c >= 0) caps.bounding.push_back(c);
  }
  caps.effective = caps.permitted = caps.bounding;
  return caps;
}

}  // namespace

Result<void> apply_policy(Profile profile, uid_t uid, gid_t gid) {
  container::Process p;
  p.user.uid = uid;
  p.user.gid = gid;
  // Root inside keeps Docker's default set in the default profile; everyone else gets none.
  p.capabilities = (uid == 0 && profile == Profile::kDefault) ? default_root_capabilities()
                                                              : container::Capabilities{};
  TRY_CTX(container::switch_user(p), "drop privileges");
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno_error("no_new_privs");
  auto filter = TRY_CTX(container::SeccompFilter::build(seccomp_for(profile)), "seccomp");
  TRY_CTX(filter->load(), "load seccomp filter");
  return {};
}

}  // namespace vireo::sandbox
