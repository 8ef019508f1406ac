#pragma once
// StoragedClient: talks to vireo-storaged's control socket (one JSON request per line, one JSON
// reply per line). This is what vireod uses to manage pools and volumes; the NBD data path does
// not go through it (VMs connect to the volume's "uri" directly).
//
// Not thread-safe: one request at a time per client; use one client per thread.
#include <filesystem>
#include <string>

#include "base/fd.h"
#include "base/json.h"
#include "base/result.h"

namespace vireo::storage {

class StoragedClient {
 public:
  [[nodiscard]] static Result<StoragedClient> connect(const std::filesystem::path& socket);

  // Sends {"op": ..., ...}; a reply with "ok": false becomes an Error whose code is the reply's
  // "code" and whose message is its "error".
  [[nodiscard]] Result<Json> call(const Json& request);

  // Typed helpers for the common commands.
  [[nodiscard]] Result<Json> create_pool(const std::string& name, const std::string& type,
                                         const std::string& path, uint64_t size = 0);
  [[nodiscard]] Result<Json> create_volume(const std::string& pool, const std::string& name,
                                           uint64_t size, const std::string& format = "raw");
  [[nodiscard]] Result<Json> show_volume(const std::string& pool, const std::string& name);
  [[nodiscard]] Result<void> remove_volume(const std::string& pool, const std::string& name);
  [[nodiscard]] Result<Json> snapshot_volume(const std::string& pool, const std::string& name,
                                             const std::string& snapshot);
  [[nodiscard]] Result<Json> check_pool(const std::string& name);

 private:
  explicit StoragedClient(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;
  std::string buffered_;
};

}  // namespace vireo::storage
