#pragma once
// Accelerator detection: decides whether KVM is usable on this host or VMs must run under TCG.
// /dev/kvm existing is not enough: a nested, paravirtualized KVM can be so slow that TCG wins,
// so the probe runs a tiny guest and times its exits.
#include <string>

namespace vireo::compute {

struct AcceleratorInfo {
  std::string accelerator;  // "kvm" or "tcg": what VMs will use
  bool kvm_present = false; // /dev/kvm opened and answered KVM_GET_API_VERSION
  bool kvm_usable = false;
  std::string reason;       // one line: why this accelerator (shown by `vireo info`, `vm show`)
};

// Takes a few milliseconds at most; callers cache the answer.
AcceleratorInfo probe_accelerator();

}  // namespace vireo::compute
