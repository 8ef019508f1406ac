#pragma once
// The create request of a container (POST /1.0/containers): parsed and validated from JSON,
// normalized back to JSON (the container's "config"), and turned into the OCI runtime config.
// Also the name rules and the restart policy's arithmetic. Pure functions, no state.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "container/default_spec.h"
#include "image/layer_store.h"
#include "image/manifest.h"

namespace vireo::containers {

enum class RestartKind { kNo, kOnFailure, kAlways, kUnlessStopped };

struct RestartPolicy {
  RestartKind kind = RestartKind::kNo;
  int max_retries = 0;  // on-failure only; 0 = unlimited
};

// A bind mount of a host path, or of a named volume's file system (volume: "POOL/VOL"; "VOL"
// in a request is "default/VOL"; source is then filled in by the engine where it is mounted).
struct BindMount {
  std::string source;  // absolute host path
  std::string target;  // absolute container path
  bool read_only = false;
  std::string volume;
};

// kNetwork: an interface on a Vireo network (network_name; empty — "default" in JSON — for the
// host's default network, resolved by the engine at create).
enum class NetworkMode { kNone, kHost, kNetwork };

// A published port: host_ip:host_port on the host reaches container_port at the container's
// address (proxied by vireo-monitor).
struct PublishedPort {
  std::string host_ip = "0.0.0.0";
  uint16_t host_port = 0;
  uint16_t container_port = 0;
  std::string protocol = "tcp";  // or "udp"
  bool operator==(const PublishedPort&) const = default;
};
// "[IP:]HOST:CTR[/tcp|/udp]" as docker run -p takes it; kInvalidArgument naming the spec.
[[nodiscard]] Result<PublishedPort> parse_port_spec(std::string_view spec);
std::string format_port(const PublishedPort& p);  // "0.0.0.0:8080->80/tcp"
// Whether a and b would bind the same host port (the same protocol and port, and the same
// address or one of them on all addresses).
bool ports_overlap(const PublishedPort& a, const PublishedPort& b);
// A "ports" array of the API: "[IP:]HOST:CTR[/udp]" strings or objects.
[[nodiscard]] Result<std::vector<PublishedPort>> parse_ports(const Json& v);
// vireo-monitor's --publish value for p with the container's address ctr_ip.
std::string monitor_publish_spec(const PublishedPort& p, const std::string& ctr_ip);

// A health check (docker run --health-cmd): command run in the container every interval; a
// run that exits non-zero or outlasts timeout is a failure; retries failures in a row make the
// container unhealthy; failures within start_period after a start do not count.
struct HealthCheck {
  std::vector<std::string> command;  // exec form; the CLI's --health-cmd is ["sh", "-c", CMD]
  std::chrono::milliseconds interval{30000};
  std::chrono::milliseconds timeout{30000};
  std::chrono::milliseconds start_period{0};
  int retries = 3;
};

struct CreateRequest {
  std::string image;
  std::string name;  // empty: generated
  std::optional<std::vector<std::string>> command;
  std::optional<std::vector<std::string>> entrypoint;
  std::vector<std::string> env;
  std::string workdir;
  std::string user;
  bool tty = false;
  bool stdin_open = false;
  bool read_only = false;
  bool auto_remove = false;
  // On by default (stricter than Docker): setuid programs cannot gain privileges; off lets
  // su/sudo inside the container work.
  bool no_new_privileges = true;
  std::optional<int64_t> memory;
  std::optional<double> cpus;
  std::optional<int64_t> pids_limit;
  std::optional<int64_t> log_max_size;   // bytes per log file before rotation (monitor default)
  std::optional<int64_t> log_max_files;  // files kept, ctr.log included
  std::vector<std::string> cap_add;
  std::vector<std::string> cap_drop;
  std::vector<BindMount> mounts;
  NetworkMode network = NetworkMode::kNetwork;  // on the default network unless told
  std::string network_name;                     // kNetwork only
  std::string ip;  // a requested address on the network ("": any free one)
  std::vector<PublishedPort> ports;
  RestartPolicy restart;
  std::optional<HealthCheck> health;
  std::map<std::string, std::string> labels;
  bool start = false;  // request-only: not part of the stored config
  bool wait = false;
};

// Strict: unknown fields and wrong types are kInvalidArgument naming the field.
[[nodiscard]] Result<CreateRequest> parse_create_request(const Json& body);
// Ports and address need a Vireo network; each host port once (kInvalidArgument).
[[nodiscard]] Result<void> check_network_request(const CreateRequest& r);
// The normalized request (every field present, start/wait left out).
Json to_json(const CreateRequest& r);
// The OCI linux.resources of the request's limits (memory, cpu, pids).
Json resources_json(const CreateRequest& r);

// [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters.
bool valid_name(std::string_view name);
// adjective_noun, random.
std::string generate_name();

// "NET_ADMIN" or "CAP_NET_ADMIN" → "CAP_NET_ADMIN"; kInvalidArgument for an unknown name.
[[nodiscard]] Result<std::string> capability_name(std::string_view name);

// The OCI config.json of a container: container::default_spec(base) (base.rootless: a user
// namespace mapping the caller to root, rootless.h), the image's process settings overridden by
// the request, resources, capabilities, mounts, network and hostname.
// Fails (kInvalidArgument) when there is no command, (kNotFound) when a bind source is missing.
[[nodiscard]] Result<Json> build_spec(const CreateRequest& r, const std::string& hostname,
                                      const image::ImageConfig& image,
                                      const std::vector<image::Layer>& layers,
                                      const std::filesystem::path& rootfs,
                                      const container::SpecOptions& base = {});

// Whether an exit calls for a restart under the policy. restarts: restarts so far;
// stopped: the user stopped the container explicitly.
bool should_restart(const RestartPolicy& p, int exit_code, int restarts, bool stopped);

// Back-off between restarts: 100 ms doubling to 10 s; reset once a run lasted 10 s.
struct Backoff {
  static constexpr std::chrono::milliseconds kInitial{100};
  static constexpr std::chrono::milliseconds kMax{10000};
  static constexpr std::chrono::milliseconds kResetAfter{10000};
  std::chrono::milliseconds next = kInitial;
  // The delay before the restart that follows a run of length ran.
  std::chrono::milliseconds delay_after(std::chrono::milliseconds ran);
};

}  // namespace vireo::containers
