#pragma once
// VMs in vireod: the "vms" object kind (definitions in the store) and the live QEMU processes
// behind them (compute::VmProcess, one per running VM). A VM's run directory is
// <state root>/vms/<name>; QEMU outlives vireod, and reconcile() re-attaches to it at start.
//
// Actions (start, stop, restart, pause, resume) are operations: PUT /1.0/vms/{name}/state with
// {"action": ..., "force": bool, "timeout": seconds}. The serial console's ring log is
// GET /1.0/vms/{name}/console. Lifecycle changes, also the guest's own (shutdown, reboot, QEMU
// dying), are events. Thread-safe: actions run on operation threads, QEMU callbacks on the
// VmProcess watcher threads.
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "base/rollback.h"
#include "compute/migration.h"
#include "compute/vm_process.h"
#include "daemon/networks.h"
#include "daemon/storage.h"
#include "server/events.h"
#include "server/objects.h"
#include "server/operations.h"
#include "server/router.h"
#include "store/store.h"

namespace vireo::daemon {

class ImageManager;

// A volume disk of a migrating VM: its place, POOL/VOL, and (once known) size and format.
struct IncomingVolume {
  size_t disk = 0;
  std::string pool, volume;
  uint64_t size = 0;
  std::string format = "raw";
};

// Where an incoming migration's source reaches this vireod: "listen" empty for one on this host
// (unix sockets), else the address it called and the certificate its QEMU presents.
struct IncomingPeer {
  std::string listen;
  std::string source_cert;
};

// Checks and normalizes a VM spec (exposed for unit tests).
[[nodiscard]] Result<Json> validate_vm(const Json& spec);

class VmManager {
 public:
  // networks and storage may be null (no NICs, no volume disks then).
  VmManager(std::filesystem::path state_root, store::Store& store, server::EventHub& events,
            server::OperationManager& operations, std::string accelerator, NetworkManager* networks,
            StorageManager* storage);
  ~VmManager();  // detaches: VMs keep running

  server::ObjectKind kind();
  void add_routes(server::Router& router);
  // At daemon start: re-attach to running QEMUs, start the autostart VMs that are not running.
  void reconcile();
  // The image store, for VMs created from VM disk images (vm_image.cc). Set before serving.
  void set_images(std::shared_ptr<ImageManager> images) { images_ = std::move(images); }
  // This vireod's TLS certificate and key (PEM files): a VM migrating in from another host
  // comes over TLS with them. Set before serving.
  void set_tls_identity(std::string cert, std::string key) {
    tls_cert_ = std::move(cert);
    tls_key_ = std::move(key);
  }

 private:
  std::vector<VolumeUser> volume_users();
  // What a create checks: the definition's volumes resolve and its networks exist.
  [[nodiscard]] Result<void> check_resolves(const store::ObjectRow& row);
  [[nodiscard]] Result<void> check_volumes_free(const store::ObjectRow& row);
  [[nodiscard]] Result<std::shared_ptr<compute::VmProcess>> running_or_conflict(
      const std::string& name);
  Json nic_stats(const store::ObjectRow& row);
  void add_stats_routes(server::Router& router);
  // Live migration between vireods (vm_migrate.cc).
  void add_migration_routes(server::Router& router);
  [[nodiscard]] Result<Json> migrate_to(const std::string& name, const Json& target,
                                        compute::MigrationOptions options);
  // The TLS credentials object for a migration in QEMU (vm_migrate.cc) from PEM files by name
  // (compute::add_tls_creds says which).
  using TlsFiles = std::vector<std::pair<std::string, std::string>>;
  [[nodiscard]] Result<compute::MigrationTls> migration_tls(const std::string& name,
                                                            compute::VmProcess& process,
                                                            const TlsFiles& files, bool destination,
                                                            const std::string& hostname);
  [[nodiscard]] Result<Json> receive_incoming(const std::string& name, const Json& body,
                                              const IncomingPeer& peer);
  [[nodiscard]] Result<Json> abort_incoming(const std::string& name);
  [[nodiscard]] Result<Json> complete_incoming(const std::string& name);
  [[nodiscard]] Result<Json> prepare_incoming(const std::string& name, const Json& spec,
                                              const std::vector<std::pair<size_t, Json>>& leases,
                                              const std::vector<IncomingVolume>& volumes,
                                              const IncomingPeer& peer, Rollback& undo);
  [[nodiscard]] Result<compute::MigrationStats> copy_to(compute::VmProcess& process,
                                                        const Json& incoming,
                                                        const std::vector<std::string>& disks,
                                                        compute::MigrationOptions options);
  // Resolves volumes to their NBD URIs (so it asks vireo-storaged).
  [[nodiscard]] Result<compute::VmSpec> vm_spec(const store::ObjectRow& row);
  [[nodiscard]] Result<compute::DiskSpec> disk_spec(const Json& disk);
  // Hot-plug (vm_devices.cc): a disk or NIC added to or removed from the definition, and from
  // the running QEMU when the VM runs.
  void add_device_routes(server::Router& router);
  [[nodiscard]] Result<Json> add_device(const std::string& name, const std::string& kind,
                                        const Json& entry);
  [[nodiscard]] Result<Json> remove_device(const std::string& name, const std::string& kind,
                                           size_t index);
  [[nodiscard]] Result<Json> plug_running(const store::ObjectRow& row, compute::VmProcess& vm,
                                          const std::string& kind, Json& entry, Json& devices);
  [[nodiscard]] Result<Json> read_devices(const std::string& name);
  [[nodiscard]] Result<void> write_devices(const std::string& name, const Json& devices);
  Json initial_devices(const store::ObjectRow& row);
  // Snapshots (vm_snapshots.cc): the disks, and optionally the memory state, saved and restored.
  void add_snapshot_routes(server::Router& router);
  [[nodiscard]] Result<Json> create_snapshot(const std::string& name, const std::string& snap,
                                             bool memory);
  [[nodiscard]] Result<Json> list_snapshots(const std::string& name);
  [[nodiscard]] Result<Json> restore_snapshot(const std::string& name, const std::string& snap);
  [[nodiscard]] Result<Json> remove_snapshot(const std::string& name, const std::string& snap);
  [[nodiscard]] Result<void> remove_all_snapshots(const std::string& name);
  [[nodiscard]] Result<Json> storaged_call(const Json& request);
  [[nodiscard]] Result<Json> act(const std::string& name, const std::string& action, bool force,
                                 int timeout_s);
  // kIncoming: QEMU waits paused for a saved state (snapshot restore with memory).
  enum class StartMode { kBoot, kIncoming };
  [[nodiscard]] Result<void> start(const std::string& name, StartMode mode = StartMode::kBoot);
  [[nodiscard]] Result<void> stop(const std::string& name, bool force, int timeout_s);
  [[nodiscard]] Result<void> remove(const store::ObjectRow& row);
  // A NIC is a persistent TAP attached to its network as a port; plugged before QEMU starts,
  // unplugged when the VM stops or is deleted.
  [[nodiscard]] Result<void> plug_nics(const store::ObjectRow& row);
  void unplug_nics(const store::ObjectRow& row);
  Json state(const store::ObjectRow& row);
  compute::VmProcessOptions process_options(const std::string& name);
  // The live process, or null when the VM is not running (an exited one is dropped here).
  std::shared_ptr<compute::VmProcess> running(const std::string& name);
  std::filesystem::path run_dir(const std::string& name) const;
  void lifecycle(const std::string& name, const std::string& verb, Json extra = {});
  // POST /1.0/vms/{name}/from-image (vm_image.cc): volume POOL/NAME-root made from a VM disk
  // image, then the VM defined with it as its first disk; a failure leaves neither.
  void add_from_image_route(server::Router& router);
  [[nodiscard]] Result<Json> create_from_image(const store::ObjectRow& row, const std::string& ref,
                                               const std::string& pool, uint64_t disk_size,
                                               server::OperationContext& ctx);
  void abandon_from_image(const store::ObjectRow& row);

  std::filesystem::path root_;
  store::Store& store_;
  server::EventHub& events_;
  server::OperationManager& operations_;
  std::string accelerator_;
  NetworkManager* networks_;
  StorageManager* storage_;
  std::shared_ptr<ImageManager> images_;
  std::string tls_cert_, tls_key_;
  std::mutex mutex_;  // guards processes_ and last_exit_; held briefly, never across QEMU calls
  std::map<std::string, std::shared_ptr<compute::VmProcess>> processes_;
  std::map<std::string, std::string> last_exit_;
  std::mutex action_mutex_;  // one action at a time per daemon: keeps start/stop races simple
};

}  // namespace vireo::daemon
