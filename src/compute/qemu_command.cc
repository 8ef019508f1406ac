#include "compute/qemu_command.h"

#include <sys/un.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include <chrono>
#include <limits>
#include <thread>

#include "base/json.h"
#include "base/strings.h"

namespace vireo::compute {

namespace {

// seccomp: besides the default filter, no new privileges, no fork/exec, no scheduler or
// resource changes. Nothing in our configuration needs them (TAPs come opened by name, no
// helper scripts).
constexpr const char* kSandbox =
    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

// QEMU option values separate keys with commas; a literal comma is written twice.
std::string opt_value(std::string_view value) {
  std::string out;
  for (char c : value) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

Result<void> check_socket_path(const std::string& path, std::string_view what) {
  if (path.empty()) return make_error(ErrorCode::kInvalidArgument, "{} path is empty", what);
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return make_error(ErrorCode::kInvalidArgument, "{} path too long for a unix socket: {}", what,
                      path);
  return {};
}

// The blockdev protocol node for an NBD URI: nbd+unix:///EXPORT?socket=PATH or
// nbd://HOST[:PORT]/EXPORT.
// How long a guest's I/O waits for a lost NBD server (vireo-storaged restarting) before it
// fails; QEMU reconnects meanwhile and reruns the waiting requests.
constexpr int kNbdReconnectDelayS = 60;

Result<Json> nbd_node(const std::string& uri) {
  Json node = {{"driver", "nbd"}, {"reconnect-delay", kNbdReconnectDelayS}};
  if (uri.starts_with("nbd+unix:///")) {
    std::string rest = uri.substr(std::string_view("nbd+unix:///").size());
    auto q = rest.find("?socket=");
    if (q == std::string::npos || q + 8 >= rest.size())
      return make_error(ErrorCode::kInvalidArgument, "NBD URI {} has no ?socket=PATH", uri);
    node["server"] = {{"type", "unix"}, {"path", rest.substr(q + 8)}};
    if (q > 0) node["export"] = rest.substr(0, q);
    return node;
  }
  if (uri.starts_with("nbd://")) {
    std::string rest = uri.substr(std::string_view("nbd://").size());
    auto slash = rest.find('/');
    std::string hostport = rest.substr(0, slash);
    auto colon = hostport.rfind(':');
    std::string host = colon == std::string::npos ? hostport : hostport.substr(0, colon);
    std::string port = colon == std::string::npos ? "10809" : hostport.substr(colon + 1);
    if (host.empty() || port.empty())
      return make_error(ErrorCode::kInvalidArgument, "NBD URI {} has no host", uri);
    node["server"] = {{"type", "inet"}, {"host", host}, {"port", port}};
    if (slash != std::string::npos && slash + 1 < rest.size())
      node["export"] = rest.substr(slash + 1);
    return node;
  }
  return make_error(ErrorCode::kInvalidArgument, "unsupported NBD URI {}", uri);
}

int64_t monotonic_raw_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

#if defined(__x86_64__)
struct TscSample {
  uint64_t tsc = 0;
  int64_t ns = 0;
};

// A TSC reading and the time it was taken: the tightest of a few tries, so that a preemption
// between the two reads does not skew it.
TscSample tsc_sample() {
  TscSample best;
  int64_t best_gap = std::numeric_limits<int64_t>::max();
  for (int i = 0; i < 5; ++i) {
    int64_t before = monotonic_raw_ns();
    uint64_t tsc = __rdtsc();
    int64_t after = monotonic_raw_ns();
    if (after - before < best_gap) {
      best_gap = after - before;
      best = {tsc, before + (after - before) / 2};
    }
  }
  return best;
}

uint64_t measure_tsc_khz() {
  using namespace std::chrono_literals;
  TscSample a = tsc_sample();
  std::this_thread::sleep_for(20ms);
  TscSample b = tsc_sample();
  if (b.ns <= a.ns || b.tsc <= a.tsc) return 0;
  double khz = static_cast<double>(b.tsc - a.tsc) * 1e6 / static_cast<double>(b.ns - a.ns);
  // Anything outside 100 MHz-10 GHz is a broken measurement, not a TSC.
  return khz >= 1e5 && khz <= 1e7 ? static_cast<uint64_t>(khz + 0.5) : 0;
}
#else
uint64_t measure_tsc_khz() {
  return 0;
}
#endif

// The kernel command line QEMU passes. microvm's ACPI is hardware-reduced, so Linux registers no
// PIT clockevent there and calibrates its LAPIC timer against the TSC: it must know the TSC rate.
// KVM tells it (kvmclock). Under TCG its only source is the quick PIT calibration, which fails
// whenever the vCPU thread is descheduled during it (any load on the host), and the guest then
// waits forever for its first timer tick. tsc_early_khz gives it the rate instead.
std::string kernel_cmdline(const VmSpec& spec) {
  if (spec.machine != Machine::kMicrovm || spec.accelerator != Accelerator::kTcg ||
      spec.cmdline.find("tsc_early_khz=") != std::string::npos)
    return spec.cmdline;
  uint64_t khz = host_tsc_khz();
  if (khz == 0) return spec.cmdline;
  std::string extra = fmt::format("tsc_early_khz={}", khz);
  return spec.cmdline.empty() ? extra : spec.cmdline + " " + extra;
}

void add(std::vector<std::string>& argv, std::string_view opt, std::string value) {
  argv.emplace_back(opt);
  argv.push_back(std::move(value));
}

// On q35 every virtio device sits on its own PCIe root port, so that any of them can be
// unplugged (devices on pcie.0 itself cannot), and kHotplugPorts spare ports take hot-plugged
// ones. Chassis numbers only need to be unique.
std::string pci_bus(const VmSpec& spec, const std::string& id, std::vector<std::string>& argv,
                    int& chassis) {
  if (spec.machine != Machine::kQ35) return "";
  add(argv, "-device", fmt::format("pcie-root-port,id=port-{},chassis={}", id, ++chassis));
  return ",bus=port-" + id;
}

Result<void> add_disks(const VmSpec& spec, std::vector<std::string>& argv, int& chassis) {
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    const auto& disk = spec.disks[i];
    std::string id = disk_id(i);
    add(argv, "-blockdev", dump_json(TRY_CTX(disk_protocol_node(disk, id), "disk {}", i)));
    add(argv, "-blockdev", dump_json(disk_format_node(disk, id)));
    std::string dev = fmt::format("{},drive={}-fmt,id={}{}", virtio_driver(spec.machine, "blk"), id,
                                  id, pci_bus(spec, id, argv, chassis));
    // Without a kernel, firmware boots the first disk.
    if (i == 0 && spec.kernel.empty()) dev += ",bootindex=0";
    add(argv, "-device", dev);
  }
  return {};
}

void add_nics(const VmSpec& spec, std::vector<std::string>& argv, int& chassis) {
  for (size_t i = 0; i < spec.nics.size(); ++i) {
    std::string id = nic_id(i);
    add(argv, "-netdev",
        fmt::format("tap,id={}-tap,ifname={},script=no,downscript=no", id, spec.nics[i].tap));
    add(argv, "-device",
        fmt::format("{},netdev={}-tap,mac={},id={}{}", virtio_driver(spec.machine, "net"), id,
                    spec.nics[i].mac, id, pci_bus(spec, id, argv, chassis)));
  }
}

void add_hotplug_ports(const VmSpec& spec, std::vector<std::string>& argv, int& chassis) {
  if (spec.machine != Machine::kQ35) return;
  for (int i = 0; i < kHotplugPorts; ++i)
    add(argv, "-device",
        fmt::format("pcie-root-port,id={}{},chassis={}", kHotplugPortPrefix, i, ++chassis));
}

}  // namespace

uint64_t host_tsc_khz() {
  static const uint64_t khz = measure_tsc_khz();
  return khz;
}

std::string virtio_driver(Machine machine, std::string_view kind) {
  return fmt::format("virtio-{}-{}", kind, machine == Machine::kQ35 ? "pci" : "device");
}

Result<Json> disk_protocol_node(const DiskSpec& disk, const std::string& id) {
  Json proto = disk.path.empty() ? TRY(nbd_node(disk.nbd_uri))
                                 : Json{{"driver", "file"}, {"filename", disk.path}};
  proto["node-name"] = id + "-proto";
  proto["read-only"] = disk.access == Access::kReadOnly;
  return proto;
}

Json disk_format_node(const DiskSpec& disk, const std::string& id) {
  return Json{{"driver", to_string(disk.format)},
              {"node-name", id + "-fmt"},
              {"file", id + "-proto"},
              {"read-only", disk.access == Access::kReadOnly}};
}

std::string disk_id(size_t index) {
  return fmt::format("disk{}", index);
}
std::string nic_id(size_t index) {
  return fmt::format("nic{}", index);
}

Result<std::vector<std::string>> build_qemu_command(const VmSpec& spec, const QemuPaths& paths,
                                                    const std::string& qemu_binary) {
  TRY_CTX(validate_spec(spec), "VM {}", spec.name);
  TRY(check_socket_path(paths.qmp_socket, "QMP socket"));
  TRY(check_socket_path(paths.console_socket, "console socket"));
  if (paths.pidfile.empty()) return make_error(ErrorCode::kInvalidArgument, "pidfile is empty");

  std::vector<std::string> argv{qemu_binary};
  add(argv, "-name", fmt::format("guest={},debug-threads=on", spec.name));
  if (!spec.uuid.empty()) add(argv, "-uuid", spec.uuid);
  argv.insert(argv.end(), {"-nodefaults", "-no-user-config", "-display", "none"});
  add(argv, "-sandbox", kSandbox);
  add(argv, "-machine", std::string(to_string(spec.machine)));
  add(argv, "-accel", std::string(to_string(spec.accelerator)));
  std::string cpu = spec.cpu_model;
  if (cpu.empty() && spec.accelerator == Accelerator::kKvm) cpu = "host";
  if (!cpu.empty()) add(argv, "-cpu", cpu);
  add(argv, "-smp", std::to_string(spec.vcpus));
  add(argv, "-m", fmt::format("{}M", spec.memory_mib));
  add(argv, "-chardev",
      fmt::format("socket,id=qmp,path={},server=on,wait=off", opt_value(paths.qmp_socket)));
  add(argv, "-mon", "chardev=qmp,mode=control");
  add(argv, "-chardev",
      fmt::format("socket,id=console,path={},server=on,wait=off", opt_value(paths.console_socket)));
  add(argv, "-serial", "chardev:console");
  add(argv, "-pidfile", paths.pidfile);
  if (!spec.uefi_code.empty()) {
    add(argv, "-drive",
        fmt::format("if=pflash,format=raw,unit=0,readonly=on,file={}", opt_value(spec.uefi_code)));
    add(argv, "-drive",
        fmt::format("if=pflash,format=raw,unit=1,file={}", opt_value(spec.uefi_vars)));
  }
  if (!spec.kernel.empty()) {
    add(argv, "-kernel", spec.kernel);
    if (!spec.initrd.empty()) add(argv, "-initrd", spec.initrd);
    if (std::string cmdline = kernel_cmdline(spec); !cmdline.empty()) add(argv, "-append", cmdline);
  }
  int chassis = 0;
  TRY(add_disks(spec, argv, chassis));
  add_nics(spec, argv, chassis);
  add_hotplug_ports(spec, argv, chassis);
  // The balloon gives memory back to the host and reports the guest's own memory figures;
  // deflate-on-oom lets the guest take it back before its OOM killer would run.
  add(argv, "-device",
      fmt::format("{},id=balloon0,deflate-on-oom=on",
                  spec.machine == Machine::kQ35 ? "virtio-balloon-pci" : "virtio-balloon-device"));
  return argv;
}

}  // namespace vireo::compute
