// Hot-plug: disks and NICs added to or removed from a VM's definition, and from its QEMU when
// it runs (q35; microvm has no hot-plug). Which QEMU device is which definition entry is kept in
// the run directory's devices.json — {"disk0": {"key": "volume:default/d1"}, "nic1": {"key":
// "mac:52:54:00:..", "tap": "vt..n1"}} — written at start and at every plug or unplug, so a
// restarted vireod still knows it, and device ids never repeat while QEMU runs.
#include <charconv>

#include "base/file.h"
#include "base/log.h"
#include "base/rollback.h"
#include "compute/hotplug.h"
#include "compute/qemu_command.h"
#include "compute/tap_device.h"
#include "daemon/vm_definition.h"
#include "daemon/vms.h"

namespace vireo::daemon {

namespace {

namespace fs = std::filesystem;
constexpr const char* kCollection = "vms";

std::string disk_key(const Json& disk) {
  return disk.contains("volume") ? "volume:" + disk["volume"].get<std::string>()
                                 : "path:" + disk.value("path", "");
}

// The first "diskN" / "nicN" that no device of the running VM has.
std::pair<std::string, size_t> free_id(const Json& devices, const std::string& prefix) {
  for (size_t n = 0;; ++n)
    if (!devices.contains(prefix + std::to_string(n))) return {prefix + std::to_string(n), n};
}

std::string collection_of(const std::string& kind) {
  return kind + "s";
}

}  // namespace

std::string nic_key(const std::string& mac) {
  return "mac:" + mac;
}

Json VmManager::initial_devices(const store::ObjectRow& row) {
  Json devices = Json::object();
  const Json disks = row.spec.value("disks", Json::array());
  for (size_t i = 0; i < disks.size(); ++i)
    devices[compute::disk_id(i)] = {{"key", disk_key(disks[i])}};
  const Json nics = row.spec.value("nics", Json::array());
  for (size_t i = 0; i < nics.size(); ++i)
    devices[compute::nic_id(i)] = {{"key", nic_key(nic_mac(vm_uuid(row), nics[i], i))},
                                   {"tap", tap_name(root_, row.name, i)}};
  return devices;
}

Result<Json> VmManager::read_devices(const std::string& name) {
  auto text = read_file(run_dir(name) / "devices.json");
  if (!text) return Json::object();
  auto j = parse_json(*text);
  return j && j->is_object() ? *j : Json::object();
}

Result<void> VmManager::write_devices(const std::string& name, const Json& devices) {
  return write_file_atomic(run_dir(name) / "devices.json", devices.dump(), 0600);
}

// Plugs entry (normalized) into the running VM and records it in devices; a NIC gets its MAC
// written into entry, so it keeps it after a restart.
Result<Json> VmManager::plug_running(const store::ObjectRow& row, compute::VmProcess& vm,
                                     const std::string& kind, Json& entry, Json& devices) {
  if (row.spec.value("machine", "q35") != "q35")
    return make_error(ErrorCode::kConflict,
                      "microvm has no hot-plug: stop VM '{}', change it, start it", row.name);
  if (kind == "disk") {
    auto [id, n] = free_id(devices, "disk");
    TRY(compute::plug_disk(vm, TRY(disk_spec(entry)), id));
    devices[id] = {{"key", disk_key(entry)}};
    return Json(id);
  }
  auto [id, n] = free_id(devices, "nic");
  const std::string tap = tap_name(root_, row.name, n);
  if (!entry.contains("mac")) entry["mac"] = compute::stable_mac(vm_uuid(row), int(n));
  Rollback undo;
  TRY(compute::create_tap(tap));
  undo.add([tap] { compute::delete_tap(tap); });
  TRY(networks_->attach_interface(entry["network"], tap));
  undo.add([this, tap] { networks_->detach_interface(tap); });
  TRY(compute::plug_nic(vm, {tap, entry["mac"].get<std::string>()}, id));
  undo.commit();
  devices[id] = {{"key", nic_key(entry["mac"])}, {"tap", tap}};
  return Json(id);
}

Result<Json> VmManager::add_device(const std::string& name, const std::string& kind,
                                   const Json& body) {
  std::lock_guard serial(action_mutex_);
  auto row = TRY(store_.get_object(kCollection, name));
  Json spec = row.spec;
  Json& list = spec[collection_of(kind)];
  if (!list.is_array()) list = Json::array();
  Json entry =
      kind == "disk" ? TRY(validate_disk(body, list.size())) : TRY(validate_nic(body, list.size()));
  if (kind == "nic") {
    if (!networks_) return make_error(ErrorCode::kUnavailable, "networks are not available");
    TRY(networks_->require(entry["network"]));
  }
  list.push_back(entry);
  store::ObjectRow changed = row;
  changed.spec = spec;
  TRY(vm_spec(changed));  // the file or volume exists, the limits hold
  Json result = {{"name", name}};
  if (auto process = running(name)) {
    if (kind == "disk") TRY(check_volumes_free(changed));
    Json devices = TRY(read_devices(name));
    result["device"] = TRY(plug_running(row, *process, kind, entry, devices));
    list.back() = entry;
    TRY(write_devices(name, devices));
  }
  TRY(store_.update_object(kCollection, name, spec, row.status, row.revision));
  result[kind] = entry;
  lifecycle(name, kind + "-added", result);
  return result;
}

Result<Json> VmManager::remove_device(const std::string& name, const std::string& kind,
                                      size_t index) {
  std::lock_guard serial(action_mutex_);
  auto row = TRY(store_.get_object(kCollection, name));
  Json spec = row.spec;
  Json& list = spec[collection_of(kind)];
  if (!list.is_array() || index >= list.size())
    return make_error(ErrorCode::kNotFound, "VM '{}' has no {} {} (it has {})", name, kind, index,
                      list.is_array() ? list.size() : 0);
  const Json entry = list[index];
  const std::string key =
      kind == "disk" ? disk_key(entry) : nic_key(nic_mac(vm_uuid(row), entry, index));
  Json result = {{"name", name}, {kind, entry}};
  if (auto process = running(name)) {
    Json devices = TRY(read_devices(name));
    for (const auto& [id, device] : devices.items()) {
      if (device.value("key", "") != key) continue;
      if (row.spec.value("machine", "q35") != "q35")
        return make_error(ErrorCode::kConflict,
                          "microvm has no hot-plug: stop VM '{}', change it, start it", name);
      if (kind == "disk") {
        TRY(compute::unplug_disk(*process, id));
      } else {
        TRY(compute::unplug_nic(*process, id));
        const std::string tap = device.value("tap", "");
        if (networks_) networks_->detach_interface(tap);
        compute::delete_tap(tap);
      }
      result["device"] = id;
      devices.erase(id);
      TRY(write_devices(name, devices));
      break;
    }
  }
  list.erase(list.begin() + static_cast<std::ptrdiff_t>(index));
  TRY(store_.update_object(kCollection, name, spec, row.status, row.revision));
  lifecycle(name, kind + "-removed", result);
  return result;
}

void VmManager::add_device_routes(server::Router& router) {
  for (std::string kind : {"disk", "nic"}) {
    const std::string collection = "/1.0/vms/{name}/" + collection_of(kind);
    router.add_sync(server::Method::kPost, collection,
                    [this, kind](server::Request& req) -> Result<server::Response> {
                      const std::string name = req.params["name"];
                      TRY(store_.get_object(kCollection, name));
                      Json body = TRY(req.json_body());
                      auto op = operations_.start(
                          fmt::format("add a {} to VM {}", kind, name),
                          Json{{"vms", {"/1.0/vms/" + name}}}, server::Cancellable::kNo,
                          [this, name, kind, body](server::OperationContext&) {
                            return add_device(name, kind, body);
                          });
                      return server::accepted(op);
                    });
    router.add_sync(
        server::Method::kDelete, collection + "/{index}",
        [this, kind](server::Request& req) -> Result<server::Response> {
          const std::string name = req.params["name"];
          TRY(store_.get_object(kCollection, name));
          const std::string text = req.params["index"];
          size_t index = 0;
          auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), index);
          if (ec != std::errc() || end != text.data() + text.size())
            return make_error(ErrorCode::kInvalidArgument, "{} index '{}' is not a number", kind,
                              text);
          auto op = operations_.start(fmt::format("remove {} {} from VM {}", kind, index, name),
                                      Json{{"vms", {"/1.0/vms/" + name}}}, server::Cancellable::kNo,
                                      [this, name, kind, index](server::OperationContext&) {
                                        return remove_device(name, kind, index);
                                      });
          return server::accepted(op);
        });
  }
}

}  // namespace vireo::daemon
