#include "container/seccomp.h"

#include <seccomp.h>

#include "container/seccomp_names.h"

namespace vireo::container {

namespace {

Result<void> add_rule(scmp_filter_ctx ctx, const SeccompRule& rule, uint32_t action,
                      uint32_t default_action) {
  // A rule that repeats the default action is rejected by libseccomp; it is a no-op anyway.
  if (action == default_action) return {};
  std::vector<scmp_arg_cmp> cmps;
  for (const auto& a : rule.args)
    cmps.push_back(
        {a.index, static_cast<scmp_compare>(seccomp_operator(a.op)), a.value, a.value_two});
  for (const auto& name : rule.names) {
    int nr = seccomp_syscall_resolve_name(name.c_str());
    // Profiles list syscalls of every architecture and kernel; unknown ones are skipped as
    // runc does.
    if (nr == __NR_SCMP_ERROR) continue;
    int rc =
        seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned>(cmps.size()), cmps.data());
    if (rc < 0)
      return make_error(ErrorCode::kInvalidArgument, "linux.seccomp: rule for {}: {}", name,
                        strerror(-rc));
  }
  return {};
}

}  // namespace

SeccompFilter::~SeccompFilter() {
  if (ctx_) seccomp_release(ctx_);
}

Result<std::unique_ptr<SeccompFilter>> SeccompFilter::build(const Seccomp& s) {
  std::unique_ptr<SeccompFilter> f(new SeccompFilter());
  uint32_t def = *seccomp_action(s.default_action, s.default_errno_ret);
  f->ctx_ = seccomp_init(def);
  if (!f->ctx_) return make_error(ErrorCode::kInternal, "seccomp_init failed");
  f->notify_ = s.default_action == "SCMP_ACT_NOTIFY";
  for (const auto& arch : s.architectures) {
    int rc = seccomp_arch_add(f->ctx_, seccomp_arch(arch));
    if (rc < 0 && rc != -EEXIST)
      return make_error(ErrorCode::kInvalidArgument, "linux.seccomp: architecture {}: {}", arch,
                        strerror(-rc));
  }
  for (const auto& flag : s.flags) {
    if (flag == "SECCOMP_FILTER_FLAG_LOG") seccomp_attr_set(f->ctx_, SCMP_FLTATR_CTL_LOG, 1);
    if (flag == "SECCOMP_FILTER_FLAG_SPEC_ALLOW") seccomp_attr_set(f->ctx_, SCMP_FLTATR_CTL_SSB, 1);
    if (flag == "SECCOMP_FILTER_FLAG_TSYNC") seccomp_attr_set(f->ctx_, SCMP_FLTATR_CTL_TSYNC, 1);
  }
  // The runtime applies NO_NEW_PRIVS itself when the config asks for it.
  seccomp_attr_set(f->ctx_, SCMP_FLTATR_CTL_NNP, 0);
  for (const auto& rule : s.syscalls) {
    uint32_t action = *seccomp_action(rule.action, rule.errno_ret);
    f->notify_ = f->notify_ || rule.action == "SCMP_ACT_NOTIFY";
    TRY(add_rule(f->ctx_, rule, action, def));
  }
  return f;
}

Result<Fd> SeccompFilter::load() {
  int rc = seccomp_load(ctx_);
  if (rc < 0) return make_error(ErrorCode::kIo, "load seccomp filter: {}", strerror(-rc));
  if (!notify_) return Fd();
  int fd = seccomp_notify_fd(ctx_);
  if (fd < 0) return make_error(ErrorCode::kIo, "seccomp listener fd: {}", strerror(-fd));
  return Fd(fd);
}

}  // namespace vireo::container
