#pragma once
// A seccomp filter built from linux.seccomp with libseccomp. Building (which checks every syscall
// name against this kernel's table) happens before the container is reported created; loading
// happens as late as possible before exec so the fewest runtime syscalls need allowing.
#include <memory>

#include "base/fd.h"
#include "base/result.h"
#include "container/config.h"

namespace vireo::container {

class SeccompFilter {
 public:
  ~SeccompFilter();
  SeccompFilter(const SeccompFilter&) = delete;
  SeccompFilter& operator=(const SeccompFilter&) = delete;

  [[nodiscard]] static Result<std::unique_ptr<SeccompFilter>> build(const Seccomp& s);
  // Loads the filter into the calling thread. With SCMP_ACT_NOTIFY rules, returns the listener
  // fd (else an invalid Fd).
  [[nodiscard]] Result<Fd> load();
  // Whether some rule (or the default) is SCMP_ACT_NOTIFY, so load() yields a listener fd.
  bool notifies() const { return notify_; }

 private:
  SeccompFilter() = default;
  void* ctx_ = nullptr;  // scmp_filter_ctx
  bool notify_ = false;
};

}  // namespace vireo::container
