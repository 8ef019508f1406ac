// vireo vm: define, run and manage virtual machines.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <thread>

#include "base/file.h"
#include "base/strings.h"
#include "cli/context.h"
#include "cli/vm_console.h"
#include "cli/vm_snapshot_cmd.h"

namespace vireo::cli {

namespace {

constexpr const char* kCollection = "vms";

struct VmFlags {
  std::string name;
  std::string kernel, initrd, cmdline, memory = "256MiB", machine = "q35", description;
  std::vector<std::string> disks, nics;
  int cpus = 1;
  bool autostart = false, start = false, force = false, log = false, volumes = false;
  int timeout = 30;
  std::string hostname, user_data, firmware;  // cloud-init seed: --user-data is a file
  std::vector<std::string> ssh_keys;          // files of OpenSSH public keys
  std::string cpu_model;
  std::vector<int> cpu_pinning;  // host CPU of each vCPU
  std::string image, pool, disk_size;  // --image: the first disk, volume POOL/NAME-root
};

// vm rm --volumes: the volume disks of a deleted VM; each failure named, the rest still tried.
Result<void> remove_volume_disks(client::Client& c, const Json& vm) {
  std::vector<std::string> failed;
  for (const auto& disk : vm.value("disks", Json::array())) {
    if (!disk.contains("volume")) continue;
    const std::string volume = disk["volume"];
    const auto slash = volume.find('/');
    auto r = c.request("DELETE", "/1.0/storage-pools/" + volume.substr(0, slash) + "/volumes/" +
                                     volume.substr(slash + 1));
    if (!r) failed.push_back(volume + " (" + r.error().message() + ")");
  }
  if (failed.empty()) return {};
  return make_error(ErrorCode::kConflict, "VM deleted, but not its volumes {}",
                    fmt::join(failed, ", "));
}

// The cloud-init seed from --hostname, --ssh-key FILE (each key line of each file) and
// --user-data FILE; the daemon checks the values.
Result<Json> cloud_init_json(const VmFlags& f) {
  Json out = Json::object();
  if (!f.hostname.empty()) out["hostname"] = f.hostname;
  if (!f.ssh_keys.empty()) out["ssh_authorized_keys"] = Json::array();
  for (const auto& file : f.ssh_keys) {
    std::string text = TRY_CTX(read_file(file), "--ssh-key");
    for (const auto& line : split(text, '\n')) {
      std::string key(trim(line));
      if (!key.empty() && !key.starts_with('#')) out["ssh_authorized_keys"].push_back(key);
    }
  }
  if (!f.user_data.empty()) out["user_data"] = TRY_CTX(read_file(f.user_data), "--user-data");
  return out;
}

// "--disk FILE[:ro]": an image file (format detected by the daemon), or "--disk POOL/VOL[:ro]":
// a storage volume, served to QEMU over NBD. An existing file wins over a volume name.
Json disk_json(const std::string& arg) {
  std::string path = arg;
  bool readonly = false;
  if (path.ends_with(":ro")) {
    path.resize(path.size() - 3);
    readonly = true;
  }
  bool volume = !std::filesystem::exists(path) && !path.starts_with('/') &&
                !path.starts_with('.') && std::count(path.begin(), path.end(), '/') == 1;
  if (volume) return Json{{"volume", path}, {"readonly", readonly}};
  return Json{{"path", std::filesystem::absolute(path).string()}, {"readonly", readonly}};
}

Result<void> change_state(Context& ctx, const std::string& name, const std::string& action,
                          bool force, int timeout) {
  Json body = {{"action", action}, {"force", force}, {"timeout", timeout}};
  TRY(run_operation(ctx, "PUT", "/1.0/vms/" + name + "/state", &body));
  return {};
}

std::string memory_text(const Json& vm) {
  return vm.contains("memory") && vm["memory"].is_number_unsigned()
             ? format_bytes(vm["memory"].get<uint64_t>())
             : plain(vm.value("memory", Json()));
}

void print_vm(Context& ctx, const Json& vm) {
  const Json state = vm.value("state", Json::object());
  std::vector<std::vector<std::string>> rows = {
      {"name:", plain(vm["name"])},
      {"status:", plain(state.value("status", Json("unknown")))},
      {"vcpus:", plain(vm.value("vcpus", Json()))},
      {"memory:", memory_text(vm)},
      {"machine:", plain(vm.value("machine", Json()))},
      {"cpu model:", plain(vm.value("cpu_model", Json("(default)")))},
      {"accelerator:", plain(state.value("accelerator", Json()))},
      {"kernel:", plain(vm.value("kernel", Json()))},
      {"autostart:", plain(vm.value("autostart", Json()))},
      {"uuid:", plain(state.value("uuid", Json()))}};
  if (state.contains("pid")) rows.push_back({"pid:", plain(state["pid"])});
  if (vm.contains("cpu_pinning")) rows.push_back({"cpu pinning:", vm["cpu_pinning"].dump()});
  const Json disks = vm.value("disks", Json::array());
  for (size_t i = 0; i < disks.size(); ++i)
    rows.push_back(
        {fmt::format("disk {}:", i),
         fmt::format("{} ({}{})", plain(disks[i].value("path", disks[i].value("volume", Json()))),
                     plain(disks[i].value("format", Json())),
                     disks[i].value("readonly", false) ? ", read-only" : "")});
  const Json nics = vm.value("nics", Json::array());
  for (size_t i = 0; i < nics.size(); ++i)
    rows.push_back({fmt::format("nic {}:", i),
                    plain(nics[i].value("network", Json())) +
                        (nics[i].contains("mac") ? " (" + plain(nics[i]["mac"]) + ")" : "")});
  if (state.contains("last_exit")) rows.push_back({"last exit:", plain(state["last_exit"])});
  rows.push_back({"console log:", plain(state.value("console_log", Json()))});
  print(ctx.format(), vm, rows);
}

uint64_t number(const Json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number_unsigned() ? j[key].get<uint64_t>()
                                                                         : 0;
}

// Two samples one second apart: CPU as a percentage of one host CPU (as top), I/O as totals and
// the rate over that second.
Result<void> show_stats(Context& ctx, const std::string& name) {
  auto* client = TRY(ctx.client());
  const std::string path = "/1.0/vms/" + name + "/stats";
  Json first = TRY(client->request("GET", path)).body;
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  Json s = TRY(client->request("GET", path)).body;
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double cpu = double(number(s, "cpu_ns") - number(first, "cpu_ns")) / 1e9 / seconds * 100;
  s["cpu_percent"] = std::round(cpu * 10) / 10;
  const Json mem = s.value("memory", Json::object());
  const Json guest = mem.value("guest", Json::object());
  std::vector<std::vector<std::string>> rows = {
      {"cpu:", fmt::format("{:.1f} % ({} vCPUs)", cpu, plain(s.value("vcpus", Json())))},
      {"memory:",
       fmt::format("{} configured, QEMU resident {}", format_bytes(number(mem, "configured")),
                   format_bytes(number(mem, "rss")))}};
  if (mem.contains("balloon")) rows.push_back({"balloon:", format_bytes(number(mem, "balloon"))});
  if (guest.contains("total"))
    rows.push_back(
        {"guest memory:", fmt::format("{} total, {} free", format_bytes(number(guest, "total")),
                                      format_bytes(number(guest, "free")))});
  for (const auto& d : s.value("disks", Json::array()))
    rows.push_back({plain(d.value("id", Json())) + ":",
                    fmt::format("read {} ({} ops), written {} ({} ops)",
                                format_bytes(number(d, "read_bytes")), number(d, "read_ops"),
                                format_bytes(number(d, "written_bytes")), number(d, "write_ops"))});
  for (const auto& n : s.value("nics", Json::array()))
    rows.push_back(
        {plain(n.value("id", Json())) + ":",
         fmt::format("{}: received {}, sent {}", plain(n.value("network", Json())),
                     format_bytes(number(n, "rx_bytes")), format_bytes(number(n, "tx_bytes")))});
  print(ctx.format(), s, rows);
  return {};
}

// vireo vm migrate NAME --to TARGET: TARGET is another vireod's socket (an absolute path, same
// host) or HOST:PORT of a remote one (with --to-token and --to-ca).
void add_migrate_command(CLI::App* noun, Context& ctx, VmFlags& f) {
  static std::string to, token, ca;
  static uint64_t bandwidth = 0;
  auto* cmd = noun->add_subcommand(
      "migrate", "Move a running VM to another vireod, live (vireo operation cancel stops it)");
  cmd->add_option("name", f.name)->required();
  cmd->add_option("--to", to, "The target vireod: its socket path, or HOST:PORT")->required();
  cmd->add_option("--to-token", token, "Bearer token for a remote target");
  cmd->add_option("--to-ca", ca, "Certificate to verify a remote target with");
  cmd->add_option("--bandwidth", bandwidth, "Cap the memory stream at this many MiB/s");
  cmd->callback([&ctx, &f] {
    ctx.outcome = [&]() -> Result<void> {
      Json target = to.starts_with('/') ? Json{{"socket", to}}
                                        : Json{{"remote", to}, {"token", token}, {"ca", ca}};
      Json body = {{"target", target}};
      if (bandwidth) body["bandwidth"] = bandwidth;
      Json r = TRY(run_operation(ctx, "POST", "/1.0/vms/" + f.name + "/migrate", &body));
      print(ctx.format(), r,
            {{"migrated:", f.name + " → " + to},
             {"total:", plain(r.value("total_ms", Json())) + " ms"},
             {"downtime:", plain(r.value("downtime_ms", Json())) + " ms"}});
      return {};
    }();
  });
}

void add_resource_commands(CLI::App* noun, Context& ctx, VmFlags& f) {
  auto* stats = noun->add_subcommand("stats", "Show a running VM's CPU, memory, disk and NIC use");
  stats->add_option("name", f.name)->required();
  stats->callback([&ctx, &f] { ctx.outcome = show_stats(ctx, f.name); });

  auto* balloon = noun->add_subcommand(
      "balloon", "Set how much of its memory a running VM keeps (virtio balloon): NAME SIZE");
  balloon->add_option("name", f.name)->required();
  balloon->add_option("size", f.memory, "e.g. 192M; at most the VM's memory")->required();
  balloon->callback([&ctx, &f] {
    ctx.outcome = [&]() -> Result<void> {
      Json body = {{"size", f.memory}};
      TRY(TRY(ctx.client())->request("PUT", "/1.0/vms/" + f.name + "/balloon", &body));
      return {};
    }();
  });
}

// vireo vm disk|nic add|rm: hot-plug into a running q35 VM, or change a stopped one.
void add_device_commands(CLI::App* noun, Context& ctx, VmFlags& f) {
  static std::string device;
  static size_t index = 0;
  for (const char* kind : {"disk", "nic"}) {
    const bool disk = std::string_view(kind) == "disk";
    auto* sub =
        noun->add_subcommand(kind, disk ? "Add or remove a disk (hot-plugged when the VM runs)"
                                        : "Add or remove a NIC (hot-plugged when the VM runs)");
    sub->require_subcommand(1);
    auto* add = sub->add_subcommand("add", disk ? "Attach a disk: NAME FILE|POOL/VOL[:ro]"
                                                : "Attach a NIC on a Vireo network: NAME NETWORK");
    add->add_option("name", f.name)->required();
    add->add_option(disk ? "disk" : "network", device)->required();
    add->callback([&ctx, &f, disk] {
      ctx.outcome = [&]() -> Result<void> {
        Json body = disk ? disk_json(device) : Json{{"network", device}};
        Json r = TRY(
            run_operation(ctx, "POST", "/1.0/vms/" + f.name + (disk ? "/disks" : "/nics"), &body));
        print(ctx.format(), r, {{"device:", plain(r.value("device", Json("(at next start)")))}});
        return {};
      }();
    });
    auto* rm = sub->add_subcommand(
        "rm", disk ? "Detach disk INDEX (as `vm show` numbers them)" : "Detach NIC INDEX");
    rm->add_option("name", f.name)->required();
    rm->add_option("index", index)->required();
    rm->callback([&ctx, &f, disk] {
      ctx.outcome = [&]() -> Result<void> {
        TRY(run_operation(ctx, "DELETE",
                          fmt::format("/1.0/vms/{}/{}/{}", f.name, disk ? "disks" : "nics", index),
                          nullptr));
        return {};
      }();
    });
  }
}

void add_action(CLI::App* noun, Context& ctx, VmFlags& f, const char* action, const char* help) {
  auto* cmd = noun->add_subcommand(action, help);
  cmd->add_option("name", f.name)->required();
  if (std::string_view(action) == "stop" || std::string_view(action) == "restart") {
    cmd->add_flag("--force,-f", f.force, "Power off at once instead of asking the guest (ACPI)");
    cmd->add_option("--timeout,-t", f.timeout, "Seconds to wait for the guest before forcing")
        ->check(CLI::Range(0, 3600));
  }
  cmd->callback(
      [&ctx, &f, action] { ctx.outcome = change_state(ctx, f.name, action, f.force, f.timeout); });
}

}  // namespace

void add_vm_commands(CLI::App& app, Context& ctx) {
  auto* noun = app.add_subcommand("vm", "Manage virtual machines (QEMU, KVM or TCG)");
  noun->require_subcommand(1);
  static VmFlags f;

  auto* create = noun->add_subcommand("create", "Define a VM (and start it with --start)");
  create->add_option("name", f.name)->required();
  create->add_option("--kernel", f.kernel, "Kernel image for direct boot");
  create->add_option("--initrd", f.initrd, "Initramfs for direct boot");
  create->add_option("--cmdline", f.cmdline, "Kernel command line");
  create->add_option("--disk", f.disks,
                     "Disk: an image file (raw or qcow2) or a volume POOL/VOL, [:ro]; repeatable");
  create->add_option("--nic", f.nics, "Vireo network to attach to (repeatable)");
  create->add_option("--memory,-m", f.memory, "Memory, e.g. 512M")->capture_default_str();
  create->add_option("--cpus,-c", f.cpus, "Virtual CPUs")->capture_default_str();
  create->add_option("--cpu-model", f.cpu_model,
                     "QEMU CPU model: max, host (KVM), Skylake-Server...");
  create->add_option("--cpu-pin", f.cpu_pinning, "Host CPU of each vCPU, e.g. 2,3")->delimiter(',');
  create->add_option("--machine", f.machine, "q35 or microvm")->capture_default_str();
  create->add_option("--description", f.description);
  create->add_option("--hostname", f.hostname, "cloud-init: the guest's host name");
  create->add_option("--ssh-key", f.ssh_keys,
                     "cloud-init: a file of OpenSSH public keys to authorize (repeatable)");
  create->add_option("--user-data", f.user_data, "cloud-init: a user-data file, sent verbatim");
  create->add_option("--firmware", f.firmware, "bios (SeaBIOS, the default) or uefi (OVMF)");
  create->add_option("--image", f.image,
                     "A VM disk image (vireo image import disk.qcow2): copied into volume "
                     "POOL/NAME-root, the first disk");
  create->add_option("--pool", f.pool, "With --image: the pool of the root volume (default)");
  create->add_option("--disk-size", f.disk_size, "With --image: grow the root volume to this size");
  create->add_flag("--autostart", f.autostart, "Start with the daemon");
  create->add_flag("--start", f.start, "Start the VM once defined");
  create->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      auto abs = [](const std::string& p) {
        return p.empty() ? p : std::filesystem::absolute(p).string();
      };
      Json body = {
          {"name", f.name},        {"vcpus", f.cpus},          {"memory", f.memory},
          {"machine", f.machine},  {"kernel", abs(f.kernel)},  {"initrd", abs(f.initrd)},
          {"cmdline", f.cmdline},  {"autostart", f.autostart}, {"description", f.description},
          {"disks", Json::array()}};
      for (const auto& d : f.disks) body["disks"].push_back(disk_json(d));
      if (!f.hostname.empty() || !f.ssh_keys.empty() || !f.user_data.empty())
        body["cloud_init"] = TRY(cloud_init_json(f));
      if (!f.firmware.empty()) body["firmware"] = f.firmware;
      if (!f.cpu_model.empty()) body["cpu_model"] = f.cpu_model;
      if (!f.cpu_pinning.empty()) body["cpu_pinning"] = f.cpu_pinning;
      if (!f.nics.empty()) {
        body["nics"] = Json::array();
        for (const auto& n : f.nics) body["nics"].push_back(Json{{"network", n}});
      }
      if (f.image.empty() && (!f.pool.empty() || !f.disk_size.empty()))
        return make_error(ErrorCode::kInvalidArgument, "--pool and --disk-size need --image");
      if (!f.image.empty()) {
        body.erase("name");
        body["image"] = f.image;
        if (!f.pool.empty()) body["pool"] = f.pool;
        if (!f.disk_size.empty()) body["disk_size"] = f.disk_size;
        TRY(run_operation(ctx, "POST", "/1.0/vms/" + f.name + "/from-image", &body));
      } else {
        TRY(TRY(ctx.client())->create(kCollection, body));
      }
      if (f.start) TRY(change_state(ctx, f.name, "start", false, f.timeout));
      return {};
    }();
  });

  add_action(noun, ctx, f, "start", "Start a VM");
  add_action(noun, ctx, f, "stop", "Stop a VM: ACPI power button, forced after --timeout");
  add_action(noun, ctx, f, "restart", "Stop and start a VM");
  add_action(noun, ctx, f, "pause", "Pause a VM's vCPUs");
  add_action(noun, ctx, f, "resume", "Resume a paused VM");

  add_resource_commands(noun, ctx, f);
  add_device_commands(noun, ctx, f);
  add_migrate_command(noun, ctx, f);

  auto* rm = noun->add_subcommand("rm", "Delete a VM definition (--force stops it first)");
  rm->add_option("name", f.name)->required();
  rm->add_flag("--force,-f", f.force, "Power the VM off first if it runs");
  rm->add_flag("--volumes", f.volumes, "Delete its volume disks too");
  rm->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      auto* c = TRY(ctx.client());
      auto vm = TRY(c->get(kCollection, f.name));
      if (f.force && vm.data.value("state", Json::object()).value("status", "stopped") != "stopped")
        TRY(change_state(ctx, f.name, "stop", true, 0));
      TRY(c->remove(kCollection, f.name));
      return f.volumes ? remove_volume_disks(*c, vm.data) : Result<void>();
    }();
  });

  noun->add_subcommand("ls", "List VMs")->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      auto items = TRY(TRY(ctx.client())->list(kCollection));
      std::vector<std::vector<std::string>> rows = {
          {"NAME", "STATUS", "VCPUS", "MEMORY", "MACHINE", "PID"}};
      for (const auto& vm : items) {
        const Json state = vm.value("state", Json::object());
        rows.push_back({plain(vm["name"]), plain(state.value("status", Json("unknown"))),
                        plain(vm.value("vcpus", Json())), memory_text(vm),
                        plain(vm.value("machine", Json())), plain(state.value("pid", Json("")))});
      }
      print(ctx.format(), Json(items), rows);
      return {};
    }();
  });

  auto* show = noun->add_subcommand("show", "Show a VM");
  show->add_option("name", f.name)->required();
  show->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      print_vm(ctx, TRY(TRY(ctx.client())->get(kCollection, f.name)).data);
      return {};
    }();
  });

  auto* edit = noun->add_subcommand(
      "edit", "Edit a VM's definition as JSON in $EDITOR (takes effect at the next start)");
  edit->add_option("name", f.name)->required();
  edit->callback([&ctx] { ctx.outcome = edit_in_editor(ctx, kCollection, f.name); });

  add_vm_console_command(noun, ctx);
  add_vm_snapshot_commands(noun, ctx);
}

}  // namespace vireo::cli
