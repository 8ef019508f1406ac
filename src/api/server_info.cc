#include "api/server_info.h"

namespace vireo::api {

Json to_json(const ServerInfo& info) {
  const HostInfo& h = info.host;
  return {{"api_version", info.api_version},
          {"version", info.version},
          {"api_extensions", info.api_extensions},
          {"auth", info.auth},
          {"host",
           {{"hostname", h.hostname},
            {"kernel", h.kernel},
            {"architecture", h.architecture},
            {"cgroup_mode", h.cgroup_mode},
            {"accelerator", h.accelerator},
            {"kvm_usable", h.kvm_usable},
            {"accelerator_reason", h.accelerator_reason},
            {"cpus", h.cpus},
            {"cpu_model", h.cpu_model},
            {"memory_bytes", h.memory_bytes}}}};
}

Result<ServerInfo> server_info_from_json(const Json& j) {
  try {
    ServerInfo info;
    info.api_version = j.at("api_version").get<std::string>();
    info.version = j.at("version").get<std::string>();
    info.api_extensions = j.value("api_extensions", std::vector<std::string>{});
    info.auth = j.value("auth", "");
    const Json& h = j.at("host");
    info.host = HostInfo{h.value("hostname", ""),           h.value("kernel", ""),
                         h.value("architecture", ""),       h.value("cgroup_mode", ""),
                         h.value("accelerator", ""),        h.value("kvm_usable", false),
                         h.value("accelerator_reason", ""), h.value("cpus", 0),
                         h.value("cpu_model", ""),          h.value("memory_bytes", uint64_t{0})};
    return info;
  } catch (const Json::exception& e) {
    return make_error(ErrorCode::kInvalidArgument, "server info: {}", e.what());
  }
}

}  // namespace vireo::api
