#include "daemon/host_facts.h"

#include <linux/magic.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>

#include "compute/accel.h"

namespace vireo::daemon {

std::string detect_cgroup_mode() {
  struct statfs fs {};
  if (::statfs("/sys/fs/cgroup", &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) return "v2";
  if (::statfs("/sys/fs/cgroup/unified", &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC)
    return "hybrid";
  return "v1";
}

static std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("model name")) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

static uint64_t memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  while (in >> key >> kib) {
    if (key == "MemTotal:") return kib * 1024;
    in.ignore(256, '\n');
  }
  return 0;
}

api::HostInfo gather_host_facts() {
  api::HostInfo h;
  struct utsname u {};
  ::uname(&u);
  h.hostname = u.nodename;
  h.kernel = u.release;
  h.architecture = u.machine;
  h.cgroup_mode = detect_cgroup_mode();
  auto accel = compute::probe_accelerator();
  h.accelerator = accel.accelerator;
  h.kvm_usable = accel.kvm_usable;
  h.accelerator_reason = accel.reason;
  h.cpus = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  h.cpu_model = cpu_model();
  h.memory_bytes = memory_bytes();
  return h;
}

}  // namespace vireo::daemon
