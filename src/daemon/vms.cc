#include "daemon/vms.h"

#include <fstream>
#include <regex>
#include <set>

#include "api/event.h"
#include "base/file.h"
#include "base/ids.h"
#include "base/log.h"
#include "base/rollback.h"
#include "base/strings.h"
#include "compute/cpu_pinning.h"
#include "compute/qemu_command.h"
#include "compute/tap_device.h"
#include "compute/vm_stats.h"
#include "daemon/vm_cloudinit.h"
#include "daemon/vm_console.h"
#include "daemon/vm_definition.h"
#include "daemon/vm_firmware.h"

namespace vireo::daemon {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kCollection = "vms";
constexpr int kDefaultStopTimeoutS = 30;
constexpr int kBalloonPollS = 2;  // how often the guest reports its memory figures

Result<std::string> string_field(const Json& spec, const char* key) {
  if (!spec.contains(key)) return std::string();
  if (!spec[key].is_string())
    return make_error(ErrorCode::kInvalidArgument, "field '{}' must be a string", key);
  return spec[key].get<std::string>();
}

Result<std::string> absolute_file(const Json& spec, const char* key) {
  std::string path = TRY(string_field(spec, key));
  if (path.empty()) return path;
  if (!path.starts_with('/'))
    return make_error(ErrorCode::kInvalidArgument, "field '{}': '{}' must be an absolute path", key,
                      path);
  if (!fs::is_regular_file(path) && !fs::is_block_file(path))
    return make_error(ErrorCode::kNotFound, "field '{}': {} does not exist", key, path);
  return path;
}

Result<uint64_t> memory_bytes(const Json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_string())
    return with_context(parse_size(value.get<std::string>()), "field 'memory'");
  return make_error(ErrorCode::kInvalidArgument,
                    "field 'memory' must be a size such as \"512MiB\" or a number of bytes");
}

// "raw" or "qcow2" from the file's first bytes when the spec does not say.
std::string detect_format(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return std::string_view(magic, 4) == "QFI\xfb" ? "qcow2" : "raw";
}

}  // namespace

// "POOL/VOL" → {pool, vol}, both valid names.
Result<std::pair<std::string, std::string>> split_volume(const std::string& text) {
  auto slash = text.find('/');
  if (slash == std::string::npos || text.find('/', slash + 1) != std::string::npos)
    return make_error(ErrorCode::kInvalidArgument, "volume '{}' must be POOL/VOLUME", text);
  std::string pool = text.substr(0, slash), vol = text.substr(slash + 1);
  TRY(validate_name(pool, "pool"));
  TRY(validate_name(vol, "volume"));
  return std::pair{pool, vol};
}

Result<Json> validate_volume_disk(const Json& disk, const std::string& where) {
  if (!disk["volume"].is_string())
    return make_error(ErrorCode::kInvalidArgument, "{}.volume must be \"POOL/VOLUME\"", where);
  TRY_CTX(split_volume(disk["volume"].get<std::string>()), "{}", where);
  if (disk.contains("path"))
    return make_error(ErrorCode::kInvalidArgument, "{}: set either path or volume", where);
  if (disk.contains("readonly") && !disk["readonly"].is_boolean())
    return make_error(ErrorCode::kInvalidArgument, "{}.readonly must be true or false", where);
  // The NBD export presents the volume's contents, whatever its format in the pool.
  return Json{
      {"volume", disk["volume"]}, {"format", "raw"}, {"readonly", disk.value("readonly", false)}};
}

Result<Json> validate_disk(const Json& disk, size_t index) {
  const std::string where = fmt::format("disks[{}]", index);
  if (!disk.is_object())
    return make_error(ErrorCode::kInvalidArgument, "{} must be an object with a 'path'", where);
  for (const auto& [key, value] : disk.items())
    if (key != "path" && key != "volume" && key != "format" && key != "readonly")
      return make_error(ErrorCode::kInvalidArgument,
                        "{}: unknown field '{}' (a disk has path or volume, format, readonly)",
                        where, key);
  if (disk.contains("volume")) return validate_volume_disk(disk, where);
  std::string path = TRY_CTX(absolute_file(disk, "path"), "{}", where);
  if (path.empty()) return make_error(ErrorCode::kInvalidArgument, "{} needs a 'path'", where);
  std::string format = TRY(string_field(disk, "format"));
  if (format.empty()) format = detect_format(path);
  if (format != "raw" && format != "qcow2")
    return make_error(ErrorCode::kInvalidArgument, "{}.format must be raw or qcow2", where);
  if (disk.contains("readonly") && !disk["readonly"].is_boolean())
    return make_error(ErrorCode::kInvalidArgument, "{}.readonly must be true or false", where);
  return Json{{"path", path}, {"format", format}, {"readonly", disk.value("readonly", false)}};
}

// The TAP of a VM's NIC: at most 15 characters, stable for (state root, VM name, index). The
// root tells apart two vireods on one host, which both have the VM while it migrates.
std::string tap_name(const fs::path& root, const std::string& vm, size_t index) {
  return fmt::format("vt{}n{}", sha256_hex(root.string() + "\nvm:" + vm).substr(0, 8), index);
}

Result<Json> validate_nic(const Json& nic, size_t index) {
  const std::string where = fmt::format("nics[{}]", index);
  if (!nic.is_object() || !nic.contains("network") || !nic["network"].is_string() ||
      nic.size() > 2 || (nic.size() == 2 && !nic.contains("mac")))
    return make_error(ErrorCode::kInvalidArgument,
                      "{} must be {{\"network\": NAME[, \"mac\": \"52:54:00:...\"]}}", where);
  TRY_CTX(validate_name(nic["network"].get<std::string>(), "network"), "{}", where);
  Json out = {{"network", nic["network"]}};
  if (nic.contains("mac")) {
    if (!nic["mac"].is_string() || !compute::valid_unicast_mac(nic["mac"].get<std::string>()))
      return make_error(ErrorCode::kInvalidArgument,
                        "{}.mac must be a unicast MAC such as "
                        "52:54:00:12:34:56",
                        where);
    out["mac"] = nic["mac"];
  }
  return out;
}

// A NIC keeps the MAC it was given (a hot-plugged one gets one then); else one derived from the
// VM's uuid and its place.
std::string nic_mac(const std::string& uuid, const Json& nic, size_t index) {
  if (nic.contains("mac") && nic["mac"].is_string()) return nic["mac"].get<std::string>();
  return compute::stable_mac(uuid, static_cast<int>(index));
}

// A stable UUID for one VM definition: the same name recreated later gets a new one. A
// definition may carry its own (a migrated VM keeps the one it had).
std::string vm_uuid(const store::ObjectRow& row) {
  if (row.spec.contains("uuid") && row.spec["uuid"].is_string()) return row.spec["uuid"];
  std::string h = sha256_hex("vm:" + row.name + "@" + row.created_at);
  h[12] = '4';
  return fmt::format("{}-{}-{}-{}-{}", h.substr(0, 8), h.substr(8, 4), h.substr(12, 4),
                     h.substr(16, 4), h.substr(20, 12));
}

namespace {

// "cpu_model": a QEMU CPU model name (no options: a comma would add some), "host" only under
// KVM (checked at start); "cpu_pinning": one host CPU per vCPU.
Result<void> validate_cpu(const Json& spec, int64_t vcpus, Json& out) {
  std::string model = TRY(string_field(spec, "cpu_model"));
  bool plain = std::all_of(model.begin(), model.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
  if (!plain || model.size() > 64)
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'cpu_model': '{}' is not a CPU model name (such as max, host, "
                      "Skylake-Server; see qemu-system-x86_64 -cpu help)",
                      model);
  if (!model.empty()) out["cpu_model"] = model;
  if (!spec.contains("cpu_pinning")) return {};
  const Json& pins = spec["cpu_pinning"];
  if (!pins.is_array() ||
      !std::all_of(pins.begin(), pins.end(), [](const Json& p) { return p.is_number_integer(); }))
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'cpu_pinning' must be a list of host CPU numbers, one per vCPU");
  std::vector<int> cpus;
  for (const auto& p : pins) cpus.push_back(p.get<int>());
  TRY(compute::validate_pinning(cpus, static_cast<int>(vcpus)));
  out["cpu_pinning"] = cpus;
  return {};
}

Result<std::string> validate_uuid(const Json& uuid) {
  static const std::regex kUuid("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}");
  if (!uuid.is_string() || !std::regex_match(uuid.get<std::string>(), kUuid))
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'uuid' must be a lower-case UUID such as "
                      "123e4567-e89b-42d3-a456-426614174000");
  return uuid.get<std::string>();
}

}  // namespace

Result<Json> validate_vm(const Json& spec) {
  static const std::set<std::string> kKnown = {"vcpus",     "memory",      "machine",    "kernel",
                                               "initrd",    "cmdline",     "disks",      "nics",
                                               "autostart", "description", "cloud_init", "firmware",
                                               "cpu_model", "cpu_pinning", "uuid"};
  for (const auto& [key, value] : spec.items())
    if (!kKnown.contains(key))
      return make_error(ErrorCode::kInvalidArgument,
                        "unknown field '{}' (a VM has vcpus, memory, machine, kernel, initrd, "
                        "cmdline, disks, nics, autostart, description, cloud_init, firmware, "
                        "cpu_model, cpu_pinning, uuid)",
                        key);
  Json out;
  out["description"] = TRY(string_field(spec, "description"));
  if (spec.contains("uuid")) out["uuid"] = TRY(validate_uuid(spec["uuid"]));
  int64_t vcpus = 1;
  if (spec.contains("vcpus")) {
    if (!spec["vcpus"].is_number_integer())
      return make_error(ErrorCode::kInvalidArgument, "field 'vcpus' must be an integer");
    vcpus = spec["vcpus"].get<int64_t>();
  }
  if (vcpus < 1 || vcpus > compute::kMaxVcpus)
    return make_error(ErrorCode::kInvalidArgument, "field 'vcpus' must be between 1 and {}",
                      compute::kMaxVcpus);
  out["vcpus"] = vcpus;
  TRY(validate_cpu(spec, vcpus, out));
  uint64_t memory = spec.contains("memory") ? TRY(memory_bytes(spec["memory"])) : 256ull << 20;
  if (memory < (compute::kMinMemoryMib << 20) || memory > (compute::kMaxMemoryMib << 20))
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'memory' must be between {} MiB and {} GiB", compute::kMinMemoryMib,
                      compute::kMaxMemoryMib >> 10);
  out["memory"] = memory;
  std::string machine = TRY(string_field(spec, "machine"));
  if (machine.empty()) machine = "q35";
  if (machine != "q35" && machine != "microvm")
    return make_error(ErrorCode::kInvalidArgument, "field 'machine' must be q35 or microvm");
  out["machine"] = machine;
  out["kernel"] = TRY(absolute_file(spec, "kernel"));
  out["initrd"] = TRY(absolute_file(spec, "initrd"));
  out["cmdline"] = TRY(string_field(spec, "cmdline"));
  if (out["kernel"] == "" && (out["initrd"] != "" || out["cmdline"] != ""))
    return make_error(ErrorCode::kInvalidArgument, "initrd and cmdline need a kernel");
  if (!out["kernel"].get_ref<const std::string&>().empty())
    TRY(compute::check_kernel_image(out["kernel"]));
  out["disks"] = Json::array();
  if (spec.contains("disks")) {
    if (!spec["disks"].is_array())
      return make_error(ErrorCode::kInvalidArgument, "field 'disks' must be an array");
    for (size_t i = 0; i < spec["disks"].size(); ++i)
      out["disks"].push_back(TRY(validate_disk(spec["disks"][i], i)));
  }
  if (out["kernel"] == "" && out["disks"].empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "a VM needs something to boot: a kernel or at least one disk");
  out["nics"] = Json::array();
  if (spec.contains("nics")) {
    if (!spec["nics"].is_array())
      return make_error(ErrorCode::kInvalidArgument, "field 'nics' must be an array");
    for (size_t i = 0; i < spec["nics"].size(); ++i)
      out["nics"].push_back(TRY(validate_nic(spec["nics"][i], i)));
  }
  if (spec.contains("autostart") && !spec["autostart"].is_boolean())
    return make_error(ErrorCode::kInvalidArgument, "field 'autostart' must be true or false");
  out["autostart"] = spec.value("autostart", false);
  out["firmware"] = TRY(validate_firmware(spec, machine));
  if (spec.contains("cloud_init")) out["cloud_init"] = TRY(validate_cloud_init(spec["cloud_init"]));
  return out;
}

VmManager::VmManager(fs::path state_root, store::Store& store, server::EventHub& events,
                     server::OperationManager& operations, std::string accelerator,
                     NetworkManager* networks, StorageManager* storage)
    : root_(std::move(state_root)),
      store_(store),
      events_(events),
      operations_(operations),
      accelerator_(std::move(accelerator)),
      networks_(networks),
      storage_(storage) {
  if (storage_) storage_->add_volume_users([this] { return volume_users(); });
}

// The volume disks of every defined VM, running or not.
std::vector<VolumeUser> VmManager::volume_users() {
  std::vector<VolumeUser> out;
  auto rows = store_.list_objects(kCollection);
  if (!rows) return out;
  for (const auto& row : *rows) {
    for (const auto& d : row.spec.value("disks", Json::array()))
      if (d.is_object() && d.contains("volume") && d["volume"].is_string())
        out.push_back({d["volume"].get<std::string>(), "VM", row.name});
    // A snapshot's volumes belong to it: vm snapshot rm (or vm rm) removes them.
    auto snapshots = list_snapshots(row.name);
    for (const auto& snap : snapshots ? *snapshots : Json::array())
      for (const auto& d : snap.value("disks", Json::array()))
        if (d.is_object() && d.contains("snapshot") && d["snapshot"].is_string())
          out.push_back({d["snapshot"].get<std::string>(), "VM snapshot",
                         row.name + "/" + snap.value("name", "?")});
  }
  return out;
}

VmManager::~VmManager() = default;

fs::path VmManager::run_dir(const std::string& name) const {
  return root_ / "vms" / name;
}

void VmManager::lifecycle(const std::string& name, const std::string& verb, Json extra) {
  Json meta = api::lifecycle_metadata("vm-" + verb, "/1.0/vms/" + name);
  if (extra.is_object()) meta["context"] = std::move(extra);
  events_.publish("lifecycle", std::move(meta));
}

Result<compute::DiskSpec> VmManager::disk_spec(const Json& d) {
  compute::DiskSpec disk;
  disk.path = d.value("path", "");
  if (d.contains("volume")) {
    if (!storage_) return make_error(ErrorCode::kUnavailable, "storage is not available");
    auto [pool, vol] = TRY(split_volume(d["volume"].get<std::string>()));
    disk.nbd_uri = TRY(storage_->volume_uri(pool, vol));
  }
  disk.format =
      d.value("format", "raw") == "qcow2" ? compute::DiskFormat::kQcow2 : compute::DiskFormat::kRaw;
  disk.access =
      d.value("readonly", false) ? compute::Access::kReadOnly : compute::Access::kReadWrite;
  return disk;
}

Result<compute::VmSpec> VmManager::vm_spec(const store::ObjectRow& row) {
  const Json& s = row.spec;
  compute::VmSpec spec;
  spec.name = row.name;
  spec.uuid = vm_uuid(row);
  spec.vcpus = s.value("vcpus", 1);
  spec.memory_mib = s.value("memory", uint64_t{256} << 20) >> 20;
  spec.machine =
      s.value("machine", "q35") == "microvm" ? compute::Machine::kMicrovm : compute::Machine::kQ35;
  spec.accelerator =
      accelerator_ == "kvm" ? compute::Accelerator::kKvm : compute::Accelerator::kTcg;
  spec.kernel = s.value("kernel", "");
  spec.initrd = s.value("initrd", "");
  spec.cmdline = s.value("cmdline", "");
  spec.cpu_model = s.value("cpu_model", "");
  if (spec.cpu_model == "host" && spec.accelerator != compute::Accelerator::kKvm)
    return make_error(ErrorCode::kInvalidArgument,
                      "cpu_model host needs KVM and this host runs TCG (see vireo info); use max "
                      "or a named model");
  for (const auto& d : s.value("disks", Json::array())) spec.disks.push_back(TRY(disk_spec(d)));
  const Json nics = s.value("nics", Json::array());
  for (size_t i = 0; i < nics.size(); ++i)
    spec.nics.push_back({tap_name(root_, row.name, i), nic_mac(spec.uuid, nics[i], i)});
  TRY(compute::validate_spec(spec));
  return spec;
}

compute::VmProcessOptions VmManager::process_options(const std::string& name) {
  compute::VmProcessOptions o;
  o.on_event = [this, name](const compute::QmpEvent& e) {
    if (e.name == "SHUTDOWN") lifecycle(name, "shutdown", e.data);
    if (e.name == "RESET") lifecycle(name, "reboot", e.data);
    if (e.name == "STOP") lifecycle(name, "paused");
    if (e.name == "RESUME") lifecycle(name, "resumed");
  };
  o.on_exit = [this, name](const compute::ExitInfo& exit) {
    {
      std::lock_guard lock(mutex_);
      last_exit_[name] = exit.describe();
    }
    lifecycle(name, "stopped", Json{{"reason", exit.describe()}});
  };
  return o;
}

std::shared_ptr<compute::VmProcess> VmManager::running(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = processes_.find(name);
  if (it == processes_.end()) return nullptr;
  if (it->second->exited()) {
    processes_.erase(it);
    return nullptr;
  }
  return it->second;
}

// A volume disk is this VM's alone while it runs: not mounted by a container, not the writable
// disk of another running VM.
Result<void> VmManager::check_volumes_free(const store::ObjectRow& row) {
  if (!storage_) return {};
  for (const auto& d : row.spec.value("disks", Json::array())) {
    if (!d.contains("volume")) continue;
    auto [pool, vol] = TRY(split_volume(d["volume"].get<std::string>()));
    for (const auto& user : storage_->users_of(pool, vol)) {
      if (user.kind == "VM" &&
          (user.name == row.name || !running(user.name) || d.value("readonly", false)))
        continue;
      return make_error(ErrorCode::kConflict, "volume {}/{} is in use by {} {}; stop it first",
                        pool, vol, user.kind, user.name);
    }
  }
  return {};
}

Result<void> VmManager::start(const std::string& name, StartMode mode) {
  if (running(name)) return make_error(ErrorCode::kConflict, "VM '{}' is already running", name);
  auto row = TRY(store_.get_object(kCollection, name));
  if (row.status == "creating")  // its disk may still be being copied (vm_image.cc)
    return make_error(ErrorCode::kConflict, "VM '{}' is still being created", name);
  compute::VmSpec spec = TRY(vm_spec(row));
  TRY(check_volumes_free(row));
  if (row.spec.value("firmware", "bios") == "uefi") TRY(use_uefi(spec, run_dir(name)));
  // The cloud-init seed, rewritten at each start, is the disk after the definition's.
  Json devices = initial_devices(row);
  if (row.spec.contains("cloud_init")) {
    spec.disks.push_back(TRY(
        write_cloud_init_seed(cloud_init_seed(row.spec["cloud_init"], spec.uuid), run_dir(name))));
    devices[compute::disk_id(spec.disks.size() - 1)] = {{"key", "cloud-init-seed"}};
  }
  Rollback undo;
  TRY(plug_nics(row));
  undo.add([this, &row] { unplug_nics(row); });
  compute::VmProcessOptions options = process_options(name);
  options.incoming = mode == StartMode::kIncoming;
  std::shared_ptr<compute::VmProcess> process =
      TRY(compute::VmProcess::start(spec, run_dir(name), std::move(options)));
  undo.add([&process] { (void)process->stop(compute::StopMode::kForce, 5s); });
  if (row.spec.contains("cpu_pinning"))
    TRY_CTX(compute::pin_vcpus(process->qmp(), row.spec["cpu_pinning"].get<std::vector<int>>()),
            "VM {}", name);
  undo.commit();
  {
    std::lock_guard lock(mutex_);
    processes_[name] = process;
    last_exit_.erase(name);
  }
  if (auto r = write_devices(name, devices); !r)
    spdlog::warn("vm {}: {} (hot-unplug will not find its devices)", name, r.error().message());
  // Best effort: without the guest's balloon driver there is nothing to poll.
  if (auto r = compute::set_balloon_polling(process->qmp(), kBalloonPollS); !r)
    spdlog::debug("vm {}: balloon statistics: {}", name, r.error().message());
  lifecycle(name, "started");
  return {};
}

Result<void> VmManager::stop(const std::string& name, bool force, int timeout_s) {
  auto process = running(name);
  if (!process) return make_error(ErrorCode::kConflict, "VM '{}' is not running", name);
  TRY(process->stop(force ? compute::StopMode::kForce : compute::StopMode::kGraceful,
                    std::chrono::seconds(timeout_s)));
  {
    std::lock_guard lock(mutex_);
    processes_.erase(name);
  }
  if (auto row = store_.get_object(kCollection, name)) unplug_nics(*row);
  return {};
}

Result<Json> VmManager::act(const std::string& name, const std::string& action, bool force,
                            int timeout_s) {
  std::lock_guard serial(action_mutex_);
  if (action == "start") {
    TRY(start(name));
  } else if (action == "stop") {
    TRY(stop(name, force, timeout_s));
  } else if (action == "restart") {
    if (running(name)) TRY(stop(name, force, timeout_s));
    TRY(start(name));
  } else if (action == "pause" || action == "resume") {
    auto process = running(name);
    if (!process) return make_error(ErrorCode::kConflict, "VM '{}' is not running", name);
    TRY(action == "pause" ? process->pause() : process->resume());
  } else {
    return make_error(ErrorCode::kInvalidArgument,
                      "action '{}': expected start, stop, restart, pause or resume", action);
  }
  return Json{{"name", name}, {"action", action}};
}

Json VmManager::state(const store::ObjectRow& row) {
  Json s{{"status", "stopped"},
         {"accelerator", accelerator_},
         {"uuid", vm_uuid(row)},
         {"console_log", (run_dir(row.name) / "console.log").string()}};
  if (auto process = running(row.name)) {
    auto status = process->status();
    s["status"] = status && *status == "paused" ? "paused" : "running";
    s["pid"] = process->pid();
  }
  std::lock_guard lock(mutex_);
  if (auto it = last_exit_.find(row.name); it != last_exit_.end()) s["last_exit"] = it->second;
  return s;
}

Result<void> VmManager::remove(const store::ObjectRow& row) {
  if (running(row.name))
    return make_error(ErrorCode::kConflict, "VM '{}' is running: stop it first", row.name);
  TRY(remove_all_snapshots(row.name));  // their volumes; the rest goes with the run dir
  unplug_nics(row);
  std::error_code ec;
  fs::remove_all(run_dir(row.name), ec);
  if (ec)
    return make_error(ErrorCode::kIo, "remove {}: {}", run_dir(row.name).string(), ec.message());
  std::lock_guard lock(mutex_);
  last_exit_.erase(row.name);
  return {};
}

Result<void> VmManager::plug_nics(const store::ObjectRow& row) {
  const Json nics = row.spec.value("nics", Json::array());
  if (nics.empty()) return {};
  if (!networks_) return make_error(ErrorCode::kUnavailable, "networks are not available");
  unplug_nics(row);  // what a VM that stopped on its own left plugged
  Rollback undo;
  for (size_t i = 0; i < nics.size(); ++i) {
    const std::string tap = tap_name(root_, row.name, i);
    TRY_CTX(compute::create_tap(tap), "NIC {}", i);
    undo.add([tap] { compute::delete_tap(tap); });
    TRY_CTX(networks_->attach_interface(nics[i]["network"], tap), "NIC {} on network {}", i,
            nics[i]["network"].get<std::string>());
    undo.add([this, tap] { networks_->detach_interface(tap); });
  }
  undo.commit();
  return {};
}

void VmManager::unplug_nics(const store::ObjectRow& row) {
  // The definition's TAPs and those hot-plugged into the QEMU that ran last.
  std::set<std::string> taps;
  const Json nics = row.spec.value("nics", Json::array());
  for (size_t i = 0; i < nics.size(); ++i) taps.insert(tap_name(root_, row.name, i));
  if (auto devices = read_devices(row.name))
    for (const auto& [id, device] : devices->items())
      if (device.contains("tap") && device["tap"].is_string()) taps.insert(device["tap"]);
  for (const auto& tap : taps) {
    if (networks_) networks_->detach_interface(tap);
    compute::delete_tap(tap);
  }
}

Result<void> VmManager::check_resolves(const store::ObjectRow& row) {
  TRY(vm_spec(row));
  for (const auto& nic : row.spec.value("nics", Json::array())) {
    if (!networks_) return make_error(ErrorCode::kUnavailable, "networks are not available");
    TRY(networks_->require(nic["network"]));
  }
  return {};
}

server::ObjectKind VmManager::kind() {
  return server::ObjectKind{
      .collection = kCollection,
      .noun = "vm",
      .validate = validate_vm,
      .create = [this](const store::ObjectRow& row, server::OperationContext*) -> Result<void> {
        return check_resolves(row);
      },
      .remove = [this](const store::ObjectRow& row) { return remove(row); },
      .abandon = [this](const store::ObjectRow& row) { abandon_from_image(row); },
      .state = [this](const store::ObjectRow& row) { return state(row); },
  };
}

void VmManager::add_routes(server::Router& router) {
  router.add_sync(
      server::Method::kPut, "/1.0/vms/{name}/state",
      [this](server::Request& req) -> Result<server::Response> {
        const std::string name = req.params["name"];
        TRY(store_.get_object(kCollection, name));
        Json body = TRY(req.json_body());
        if (!body.is_object() || !body.contains("action") || !body["action"].is_string())
          return make_error(ErrorCode::kInvalidArgument,
                            "body must be {\"action\": \"start|stop|restart|pause|resume\"}");
        std::string action = body["action"];
        bool force = body.value("force", false);
        int timeout = body.value("timeout", kDefaultStopTimeoutS);
        if (timeout < 0 || timeout > 3600)
          return make_error(ErrorCode::kInvalidArgument, "timeout must be 0-3600 seconds");
        auto op =
            operations_.start(fmt::format("{} VM {}", action, name),
                              Json{{"vms", {"/1.0/vms/" + name}}}, server::Cancellable::kNo,
                              [this, name, action, force, timeout](server::OperationContext&) {
                                return act(name, action, force, timeout);
                              });
        return server::accepted(op);
      });
  add_stats_routes(router);
  add_device_routes(router);
  add_migration_routes(router);
  add_snapshot_routes(router);
  add_from_image_route(router);
  add_vm_console_route(router,
                       [this](const std::string& name) { return running_or_conflict(name); });
  router.add_sync(
      server::Method::kGet, "/1.0/vms/{name}/console",
      [this](server::Request& req) -> Result<server::Response> {
        const std::string name = req.params["name"];
        TRY(store_.get_object(kCollection, name));
        auto text = read_file(run_dir(name) / "console.log");
        return server::Response::json(Json{{"name", name}, {"log", text ? *text : std::string()}});
      });
}

// A running VM's process, or 409; 404 for an unknown VM.
Result<std::shared_ptr<compute::VmProcess>> VmManager::running_or_conflict(
    const std::string& name) {
  TRY(store_.get_object(kCollection, name));
  auto process = running(name);
  if (!process) return make_error(ErrorCode::kConflict, "VM '{}' is not running", name);
  return process;
}

// Counters of a VM's TAP NICs, from the guest's side (what the TAP sends, the guest receives).
Json VmManager::nic_stats(const store::ObjectRow& row) {
  Json out = Json::array();
  const Json nics = row.spec.value("nics", Json::array());
  const Json devices = read_devices(row.name).value_or(Json::object());
  for (size_t i = 0; i < nics.size(); ++i) {
    // A hot-plugged NIC's TAP and device id are in devices.json, found by its MAC.
    std::string id = compute::nic_id(i), tap = tap_name(root_, row.name, i);
    const std::string key = nic_key(nic_mac(vm_uuid(row), nics[i], i));
    for (const auto& [dev, d] : devices.items())
      if (d.value("key", "") == key) id = dev, tap = d.value("tap", tap);
    const fs::path dir = fs::path("/sys/class/net") / tap / "statistics";
    auto counter = [&](const char* file) -> uint64_t {
      auto text = read_file(dir / file);
      return text ? std::strtoull(text->c_str(), nullptr, 10) : 0;
    };
    out.push_back({{"id", id},
                   {"network", nics[i].value("network", "")},
                   {"rx_bytes", counter("tx_bytes")},
                   {"rx_packets", counter("tx_packets")},
                   {"tx_bytes", counter("rx_bytes")},
                   {"tx_packets", counter("rx_packets")}});
  }
  return out;
}

void VmManager::add_stats_routes(server::Router& router) {
  router.add_sync(
      server::Method::kGet, "/1.0/vms/{name}/stats",
      [this](server::Request& req) -> Result<server::Response> {
        const std::string name = req.params["name"];
        auto process = TRY(running_or_conflict(name));
        auto row = TRY(store_.get_object(kCollection, name));
        Json stats = compute::to_json(TRY(compute::collect_stats(process->pid(), process->qmp())));
        stats["name"] = name;
        stats["vcpus"] = row.spec.value("vcpus", 1);
        stats["memory"]["configured"] = row.spec.value("memory", uint64_t{256} << 20);
        stats["nics"] = nic_stats(row);
        return server::Response::json(stats);
      });
  // The balloon: how much of its memory the guest keeps (at most what it was defined with).
  router.add_sync(
      server::Method::kPut, "/1.0/vms/{name}/balloon",
      [this](server::Request& req) -> Result<server::Response> {
        const std::string name = req.params["name"];
        Json body = TRY(req.json_body());
        if (!body.is_object() || !body.contains("size") ||
            !(body["size"].is_string() || body["size"].is_number_unsigned()))
          return make_error(ErrorCode::kInvalidArgument,
                            "body must be {\"size\": \"512M\" or bytes}");
        uint64_t size = body["size"].is_string() ? TRY(parse_size(body["size"].get<std::string>()))
                                                 : body["size"].get<uint64_t>();
        auto process = TRY(running_or_conflict(name));
        auto row = TRY(store_.get_object(kCollection, name));
        const uint64_t memory = row.spec.value("memory", uint64_t{256} << 20);
        const uint64_t min = compute::kMinMemoryMib << 20;
        if (size < min || size > memory)
          return make_error(ErrorCode::kInvalidArgument,
                            "balloon size {} is out of range: {} to the VM's memory, {}",
                            format_bytes(size), format_bytes(min), format_bytes(memory));
        TRY(compute::set_balloon_target(process->qmp(), size));
        return server::Response::json(Json{{"name", name}, {"size", size}});
      });
}

void VmManager::reconcile() {
  auto rows = store_.list_objects(kCollection);
  if (!rows) {
    spdlog::error("vms: cannot list VMs: {}", rows.error().message());
    return;
  }
  for (const auto& row : *rows) {
    if (row.status != "ready") continue;
    if (fs::exists(run_dir(row.name) / "qemu.pid")) {
      auto attached = compute::VmProcess::attach(run_dir(row.name), process_options(row.name));
      if (attached) {
        std::lock_guard lock(mutex_);
        processes_[row.name] = std::move(*attached);
        spdlog::info("vms: re-attached to running VM {}", row.name);
        continue;
      }
    }
    if (!row.spec.value("autostart", false)) continue;
    operations_.start(fmt::format("autostart VM {}", row.name),
                      Json{{"vms", {"/1.0/vms/" + row.name}}}, server::Cancellable::kNo,
                      [this, name = row.name](server::OperationContext&) {
                        return act(name, "start", false, kDefaultStopTimeoutS);
                      });
  }
}

}  // namespace vireo::daemon
