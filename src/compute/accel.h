#pragma once
// Accelerator detection: decides whether KVM is usable on this host or VMs must run under TCG.
// /dev/kvm existing is not enough: a nested, paravirtualized KVM can be so slow that TCG wins,
// so the probe runs a tiny guest and times its exits.
#include <chrono>
#include <string>

namespace vireo::compute {

struct AcceleratorInfo {
  std::string accelerator;   // "kvm" or "tcg": what VMs will use
  bool kvm_present = false;  // /dev/kvm opened and answered KVM_GET_API_VERSION
  bool kvm_usable = false;
  std::string reason;  // one line: why this accelerator (shown by `vireo info`, `vm show`)
};

// Takes a few milliseconds at most; callers cache the answer.
AcceleratorInfo probe_accelerator();

// The same probe against another device node (tests point it at files that are not KVM).
AcceleratorInfo probe_accelerator_at(const std::string& device);

// What the timed guest measured: `exits` port-I/O exits to user space took `elapsed`;
// `completed` is false when the probe gave up at its time budget.
struct ExitTiming {
  int exits = 0;
  std::chrono::nanoseconds elapsed{0};
  bool completed = false;
};

// A VM exit to user space costs ~1-5 us on bare-metal KVM and ~10-40 us under ordinary nested
// VMX. Past 50 us per exit a stock guest (tens of thousands of exits to boot: PIT/APIC timers,
// serial, PCI config) spends seconds to minutes in exits, and TCG, which emulates those devices
// in-process without world switches, boots faster.
inline constexpr std::chrono::microseconds kMaxExitCost{50};
// The whole timed run stops after this long and counts as unusable.
inline constexpr std::chrono::milliseconds kProbeBudget{50};
// Exits the probe guest performs: enough to average out scheduling noise, at most ~10 ms even
// at the threshold cost.
inline constexpr int kProbeExits = 200;

// The decision from a measurement, separate from the measuring so it can be tested anywhere.
AcceleratorInfo decide_accelerator(const ExitTiming& timing);

}  // namespace vireo::compute
