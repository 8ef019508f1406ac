#include "compute/hotplug.h"

#include "base/rollback.h"
#include "compute/qemu_command.h"

namespace vireo::compute {

Result<std::string> free_hotplug_port_in(const Json& query_pci) {
  if (!query_pci.is_array()) return make_error(ErrorCode::kInternal, "query-pci: not a list");
  for (const auto& bus : query_pci) {
    if (!bus.is_object()) continue;
    for (const auto& dev : bus.value("devices", Json::array())) {
      if (!dev.is_object()) continue;
      std::string id = dev.value("qdev_id", "");
      if (!id.starts_with(kHotplugPortPrefix) || !dev.contains("pci_bridge")) continue;
      const Json& bridge = dev["pci_bridge"];
      if (!bridge.is_object() || bridge.value("devices", Json::array()).empty()) return id;
    }
  }
  return make_error(ErrorCode::kConflict,
                    "no free hot-plug slot ({} per VM); unplug a device or restart the VM to "
                    "apply the definition",
                    kHotplugPorts);
}

Result<std::string> free_hotplug_port(QmpClient& qmp) {
  return free_hotplug_port_in(TRY(qmp.execute("query-pci")));
}

Result<void> plug_disk(VmProcess& vm, const DiskSpec& disk, const std::string& id) {
  QmpClient& qmp = vm.qmp();
  std::string port = TRY(free_hotplug_port(qmp));
  Rollback undo;
  TRY(qmp.execute("blockdev-add", TRY(disk_protocol_node(disk, id))));
  undo.add([&qmp, id] { (void)qmp.execute("blockdev-del", {{"node-name", id + "-proto"}}); });
  TRY(qmp.execute("blockdev-add", disk_format_node(disk, id)));
  undo.add([&qmp, id] { (void)qmp.execute("blockdev-del", {{"node-name", id + "-fmt"}}); });
  TRY(qmp.execute("device_add", {{"driver", virtio_driver(Machine::kQ35, "blk")},
                                 {"id", id},
                                 {"drive", id + "-fmt"},
                                 {"bus", port}}));
  undo.commit();
  return {};
}

Result<void> unplug_disk(VmProcess& vm, const std::string& id, std::chrono::milliseconds timeout) {
  TRY(vm.delete_device(id, timeout));
  TRY(vm.qmp().execute("blockdev-del", {{"node-name", id + "-fmt"}}));
  TRY(vm.qmp().execute("blockdev-del", {{"node-name", id + "-proto"}}));
  return {};
}

Result<void> plug_nic(VmProcess& vm, const NicSpec& nic, const std::string& id) {
  QmpClient& qmp = vm.qmp();
  std::string port = TRY(free_hotplug_port(qmp));
  Rollback undo;
  TRY(qmp.execute("netdev_add", {{"type", "tap"},
                                 {"id", id + "-tap"},
                                 {"ifname", nic.tap},
                                 {"script", "no"},
                                 {"downscript", "no"}}));
  undo.add([&qmp, id] { (void)qmp.execute("netdev_del", {{"id", id + "-tap"}}); });
  TRY(qmp.execute("device_add", {{"driver", virtio_driver(Machine::kQ35, "net")},
                                 {"id", id},
                                 {"netdev", id + "-tap"},
                                 {"mac", nic.mac},
                                 {"bus", port}}));
  undo.commit();
  return {};
}

Result<void> unplug_nic(VmProcess& vm, const std::string& id, std::chrono::milliseconds timeout) {
  TRY(vm.delete_device(id, timeout));
  TRY(vm.qmp().execute("netdev_del", {{"id", id + "-tap"}}));
  return {};
}

}  // namespace vireo::compute
