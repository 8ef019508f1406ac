#include "compute/accel.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace vireo::compute {

// Placeholder until the timing probe lands: presence only.
AcceleratorInfo probe_accelerator() {
  AcceleratorInfo info{.accelerator = "tcg"};
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    info.reason = "/dev/kvm is not available";
    return info;
  }
  info.kvm_present = ::ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION;
  ::close(fd);
  info.reason = "KVM not yet probed";
  return info;
}

}  // namespace vireo::compute
