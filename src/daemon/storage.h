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
// connection, so calls never share a StoragedClient.
#include <filesystem>
#include <mutex>
#include <string>

#include "server/events.h"
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

class StorageManager {
 public:
  StorageManager(std::filesystem::path root, server::EventHub& events);

  // Adopts or starts vireo-storaged and creates pool "default" when there is no pool at all.
  // A failure is logged by the caller: the daemon serves everything else without storage.
  [[nodiscard]] Result<void> start();
  void add_routes(server::Router& router);
  // The nbd+unix URI of POOL/VOL, for VM disks; kNotFound when there is no such volume.
  [[nodiscard]] Result<std::string> volume_uri(const std::string& pool, const std::string& volume);
  // vireo-storaged's vol.show of POOL/VOL (format, size, file for dir pools, ...).
  [[nodiscard]] Result<Json> show_volume(const std::string& pool, const std::string& volume);

 private:
  // A control connection; (re)starts vireo-storaged when nothing answers.
  [[nodiscard]] Result<storage::StoragedClient> client();
  [[nodiscard]] Result<void> spawn_storaged();
  [[nodiscard]] Result<Json> call(Json request);
  void lifecycle(const std::string& action, const std::string& source);

  std::filesystem::path root_;
  StoragePaths paths_;
  server::EventHub& events_;
  std::mutex spawn_mutex_;
};

}  // namespace vireo::daemon
