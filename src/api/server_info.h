#pragma once
// GET /1.0: what the server is and what the host can do.
#include <cstdint>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace vireo::api {

inline constexpr const char* kApiVersion = "1.0";

struct HostInfo {
  std::string hostname;
  std::string kernel;        // uname release
  std::string architecture;  // uname machine
  std::string cgroup_mode;   // "v2", "hybrid" or "v1"
  std::string accelerator;   // "kvm" or "tcg"
  bool kvm_usable = false;
  std::string accelerator_reason;
  int cpus = 0;
  std::string cpu_model;
  uint64_t memory_bytes = 0;
};

struct ServerInfo {
  std::string api_version = kApiVersion;
  std::string version;
  std::vector<std::string> api_extensions;
  std::string auth;  // "trusted": this request was authenticated
  HostInfo host;
};

Json to_json(const ServerInfo& info);
[[nodiscard]] Result<ServerInfo> server_info_from_json(const Json& j);

}  // namespace vireo::api
