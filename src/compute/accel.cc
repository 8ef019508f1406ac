#include "compute/accel.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "base/fd.h"
#include "base/result.h"

namespace vireo::compute {

namespace {

using Clock = std::chrono::steady_clock;

// Guest physical layout of the probe VM: one 64 KiB slot at 0, code at 0x1000.
constexpr uint64_t kGuestMemSize = 0x10000;
constexpr uint64_t kCodeAddr = 0x1000;
constexpr uint16_t kProbePort = 0x10;

// 16-bit real-mode code: `mov cx, kProbeExits; 1: out 0x10, al; dec cx; jnz 1b; hlt`.
// Each `out` is one exit to user space; `hlt` ends the run.
constexpr std::array<uint8_t, 9> probe_code() {
  return {0xb9,
          uint8_t(kProbeExits & 0xff),
          uint8_t(kProbeExits >> 8),  // mov cx, imm16
          0xe6,
          uint8_t(kProbePort),  // out imm8, al
          0x49,                 // dec cx
          0x75,
          0xfb,   // jnz -5
          0xf4};  // hlt
}

// A mapping that unmaps itself.
class Mapping {
 public:
  Mapping(void* addr, size_t size) : addr_(addr), size_(size) {}
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (addr_ != MAP_FAILED) ::munmap(addr_, size_);
  }
  bool valid() const { return addr_ != MAP_FAILED; }
  void* get() const { return addr_; }

 private:
  void* addr_;
  size_t size_;
};

Result<int> kvm_ioctl(int fd, unsigned long request, unsigned long arg, const char* what) {
  int r = ::ioctl(fd, request, arg);
  if (r < 0) return errno_error(what);
  return r;
}

// Points the vCPU at the code in real mode, flat segments at 0.
Result<void> setup_vcpu(int vcpu) {
  kvm_sregs sregs{};
  TRY(kvm_ioctl(vcpu, KVM_GET_SREGS, reinterpret_cast<unsigned long>(&sregs), "KVM_GET_SREGS"));
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  TRY(kvm_ioctl(vcpu, KVM_SET_SREGS, reinterpret_cast<unsigned long>(&sregs), "KVM_SET_SREGS"));
  kvm_regs regs{};
  regs.rip = kCodeAddr;
  regs.rflags = 0x2;  // bit 1 is reserved and must be set
  TRY(kvm_ioctl(vcpu, KVM_SET_REGS, reinterpret_cast<unsigned long>(&regs), "KVM_SET_REGS"));
  return {};
}

// Runs the vCPU until it halts or the budget is spent, counting port-I/O exits.
Result<ExitTiming> run_timed(int vcpu, kvm_run* run) {
  ExitTiming timing;
  auto start = Clock::now();
  auto deadline = start + kProbeBudget;
  for (;;) {
    if (::ioctl(vcpu, KVM_RUN, 0) < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return errno_error("KVM_RUN");
    }
    if (run->exit_reason == KVM_EXIT_HLT) {
      timing.completed = true;
      break;
    }
    if (run->exit_reason != KVM_EXIT_IO || run->io.port != kProbePort)
      return make_error(ErrorCode::kUnavailable, "probe guest made an unexpected exit (reason {})",
                        run->exit_reason);
    ++timing.exits;
    if (Clock::now() > deadline) break;
  }
  timing.elapsed = Clock::now() - start;
  return timing;
}

Result<ExitTiming> time_probe_guest(int kvm) {
  int mmap_size = TRY(kvm_ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE"));
  Fd vm(TRY(kvm_ioctl(kvm, KVM_CREATE_VM, 0, "KVM_CREATE_VM")));
  Mapping mem(::mmap(nullptr, kGuestMemSize, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              kGuestMemSize);
  if (!mem.valid()) return errno_error("mmap guest memory");
  constexpr auto code = probe_code();
  std::memcpy(static_cast<uint8_t*>(mem.get()) + kCodeAddr, code.data(), code.size());
  kvm_userspace_memory_region region{.slot = 0,
                                     .flags = 0,
                                     .guest_phys_addr = 0,
                                     .memory_size = kGuestMemSize,
                                     .userspace_addr = reinterpret_cast<uint64_t>(mem.get())};
  TRY(kvm_ioctl(vm.get(), KVM_SET_USER_MEMORY_REGION, reinterpret_cast<unsigned long>(&region),
                "KVM_SET_USER_MEMORY_REGION"));
  Fd vcpu(TRY(kvm_ioctl(vm.get(), KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU")));
  Mapping run_map(::mmap(nullptr, static_cast<size_t>(mmap_size), PROT_READ | PROT_WRITE,
                         MAP_SHARED, vcpu.get(), 0),
                  static_cast<size_t>(mmap_size));
  if (!run_map.valid()) return errno_error("mmap kvm_run");
  TRY(setup_vcpu(vcpu.get()));
  return run_timed(vcpu.get(), static_cast<kvm_run*>(run_map.get()));
}

AcceleratorInfo tcg_because(std::string reason, bool kvm_present) {
  return AcceleratorInfo{.accelerator = "tcg",
                         .kvm_present = kvm_present,
                         .kvm_usable = false,
                         .reason = std::move(reason)};
}

}  // namespace

AcceleratorInfo decide_accelerator(const ExitTiming& timing) {
  double ms = std::chrono::duration<double, std::milli>(timing.elapsed).count();
  if (!timing.completed || timing.exits == 0)
    return tcg_because(fmt::format("KVM too slow: probe guest made only {} VM exits in {:.1f} ms "
                                   "(budget {} ms), using TCG",
                                   timing.exits, ms, kProbeBudget.count()),
                       true);
  double per_exit_us = ms * 1000.0 / timing.exits;
  auto limit_us = kMaxExitCost.count();
  if (per_exit_us > static_cast<double>(limit_us))
    return tcg_because(fmt::format("KVM too slow: {:.1f} us per VM exit (limit {} us, {} exits in "
                                   "{:.1f} ms), using TCG",
                                   per_exit_us, limit_us, timing.exits, ms),
                       true);
  return AcceleratorInfo{
      .accelerator = "kvm",
      .kvm_present = true,
      .kvm_usable = true,
      .reason =
          fmt::format("KVM usable: {:.1f} us per VM exit (limit {} us, {} exits in {:.1f} ms)",
                      per_exit_us, limit_us, timing.exits, ms)};
}

AcceleratorInfo probe_accelerator_at(const std::string& device) {
  Fd kvm(::open(device.c_str(), O_RDWR | O_CLOEXEC));
  if (!kvm)
    return tcg_because(
        fmt::format("{} is not available ({}), using TCG", device, std::strerror(errno)), false);
  if (::ioctl(kvm.get(), KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
    return tcg_because(
        fmt::format("{} does not speak KVM API {}, using TCG", device, KVM_API_VERSION), false);
  auto timing = time_probe_guest(kvm.get());
  if (!timing)
    return tcg_because(
        fmt::format("KVM probe guest failed ({}), using TCG", timing.error().message()), true);
  return decide_accelerator(*timing);
}

AcceleratorInfo probe_accelerator() {
  return probe_accelerator_at("/dev/kvm");
}

}  // namespace vireo::compute
