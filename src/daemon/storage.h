#pragma once
// Storage pools and volumes in vireod: supervision of the host's vireo-storaged and the
// /1.0/storage-pools routes. vireo-storaged is the source of truth for pools and volumes
// (nothing is kept in the store); vireod forwards each request to its control socket and turns
// its errors into API errors.
//
// vireo-storaged runs in its own session with its state in <root>/storage and its sockets
// there too; it outlives vireod (NBD clients keep being served), and a restarted vireod adopts
// the one that answers on the control socket. Its pid is in <root>/storage/storaged.pid.
//
// Thread-safety: the routes run on the server's thread; each request opens its own control
// connection, so calls never share a StoragedClient. Whatever copies data (import, export, a
// dir pool's snapshot or clone) runs as an operation, off that thread.
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "server/events.h"
#include "server/operations.h"
#include "server/router.h"
#include "storage/storaged_client.h"

namespace vireo::daemon {

struct StoragePaths {
  std::filesystem::path state;    // <root>/storage
  std::filesystem::path control;  // <root>/storage/control.sock
  std::filesystem::path nbd;      // <root>/storage/nbd.sock
  std::filesystem::path pidfile;  // <root>/storage/storaged.pid
  std::filesystem::path log;      // <root>/storage/storaged.log
};

StoragePaths storage_paths(const std::filesystem::path& root);

struct VolumeUser {
  std::string volume;  // POOL/VOL
  std::string kind;    // "container" or "VM"
  std::string name;
};

class StorageManager {
 public:
  StorageManager(std::filesystem::path root, server::EventHub& events,
                 server::OperationManager& operations);

  // Adopts or starts vireo-storaged and creates pool "default" when there is no pool at all.
  // A failure is logged by the caller: the daemon serves everything else without storage.
  [[nodiscard]] Result<void> start();
  void add_routes(server::Router& router);
  // The nbd+unix URI of POOL/VOL, for VM disks; kNotFound when there is no such volume.
  [[nodiscard]] Result<std::string> volume_uri(const std::string& pool, const std::string& volume);
  // Who uses which volume, from one kind of user (containers, VMs). A volume in use is not
  // deleted (409 naming the users), and containers and VMs do not share one (a file system
  // mounted on the host and a guest's disk at once corrupt each other). Sources are added before
  // the server starts.
  using VolumeUsers = std::function<std::vector<VolumeUser>()>;
  void add_volume_users(VolumeUsers source) { user_sources_.push_back(std::move(source)); }
  std::vector<VolumeUser> users_of(const std::string& pool, const std::string& volume);
  // vireo-storaged's vol.show of POOL/VOL (format, size, file for dir pools, ...).
  [[nodiscard]] Result<Json> show_volume(const std::string& pool, const std::string& volume);
  // Announces a volume made on another manager's behalf (a VM's root volume from an image).
  void volume_created(const std::string& pool, const std::string& volume);

 private:
  // A control connection; (re)starts vireo-storaged when nothing answers.
  [[nodiscard]] Result<storage::StoragedClient> client();
  [[nodiscard]] Result<void> spawn_storaged();
  [[nodiscard]] Result<Json> call(Json request);
  void lifecycle(const std::string& action, const std::string& source);
  [[nodiscard]] Result<void> check_unused(const std::string& pool, const std::string& volume);
  void add_pool_routes(server::Router& router);
  void add_volume_routes(server::Router& router);
  void add_copy_routes(server::Router& router);
  [[nodiscard]] Result<server::Response> import_volume(const std::string& pool,
                                                       const std::string& name, const Json& body);

  std::filesystem::path root_;
  StoragePaths paths_;
  server::EventHub& events_;
  server::OperationManager& operations_;
  std::mutex spawn_mutex_;
  std::vector<VolumeUsers> user_sources_;
};

}  // namespace vireo::daemon
