#pragma once
// Engine: the host's containers, the library behind vireod's /1.0/containers. Each container
// lives in <state>/<id>/:
//   spec.json   the create request, normalized (request.h)
//   state.json  state, pids, exit, timestamps, restart count (written atomically)
//   bundle/     config.json, and the root file system: rootfs (overlay), upper, work
//   monitor/    vireo-monitor's state directory (ctr.log*, exit.json, attach.sock, monitor.pid)
// and the runtime's own state under <state>/runtime. A container runs under its own
// vireo-monitor, which outlives the engine: open() re-adopts the monitors that still run,
// records the exits that happened meanwhile and applies the restart policies.
//
// One thread watches the monitors (epoll over their pidfds), runs the restart policies with
// their back-off and removes --rm containers once they exited; it also serves log followers
// (inotify). Thread-safe: one mutex guards the table and is never held across slow work; the
// lifecycle actions of one container (start, stop, remove, restart) are serialized per
// container.
#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/json.h"
#include "base/result.h"
#include "containers/exec_session.h"
#include "containers/logs.h"
#include "containers/request.h"

namespace vireo::image {
class ImageStore;
}

namespace vireo::containers {

enum class State { kCreated, kRunning, kExited, kRestarting };

// A container's interface on a Vireo network: a veth pair whose host end (iface) is a port of
// the network and whose other end is eth0 in the container's own network namespace, pinned
// from the first start to the removal. The address is reserved in the network's IPAM (DHCP
// reservations, with the container's name as its DNS name) for the container's whole life.
struct Attachment {
  std::string network;
  std::string iface;  // host end: "vc" + 12 hex of the id
  std::string mac;    // 02:... from the id, stable
  std::string ip;
  int prefix = 24;
  std::string gateway;  // "" when the network has none
  int mtu = 1500;
};
Json to_json(const Attachment& a);
[[nodiscard]] Result<Attachment> attachment_from_json(const Json& j);

// A container's health (when it has a check): "starting" from each start until the first
// success (or until retries failures once the start period passed), then "healthy" or
// "unhealthy"; the last kHealthLog results.
struct HealthResult {
  std::string start, end;  // RFC 3339
  int exit_code = 0;       // -1: timed out or could not run
  std::string output;      // stdout then stderr, at most kHealthOutput bytes
};
struct Health {
  std::string status = "starting";
  int failing_streak = 0;
  std::vector<HealthResult> log;
};
inline constexpr size_t kHealthLog = 5;
inline constexpr size_t kHealthOutput = 4096;
Json to_json(const Health& h);

// What the engine needs of the host's networks (vireod implements it over vireo-netd).
class NetworkBackend {
 public:
  virtual ~NetworkBackend() = default;
  // The network containers join when the request names none ("": none).
  virtual std::string default_network() = 0;
  // Reserves ip (or any free address when empty) on network for mac, with dns_name as its DNS
  // name when not empty; fills in address, prefix, gateway and MTU of a.
  [[nodiscard]] virtual Result<void> reserve(Attachment& a, const std::string& ip,
                                             const std::string& dns_name) = 0;
  virtual void release(const Attachment& a) = 0;
  // Makes a.iface (an existing host interface) a port of a.network; detach undoes it (a
  // missing port is fine).
  [[nodiscard]] virtual Result<void> attach(const Attachment& a) = 0;
  virtual void detach(const Attachment& a) = 0;
  // A published port as a DNAT port forward of the network (what arrives on an uplink
  // network's gateway address at p.host_port goes to a.ip:p.container_port); kAlreadyExists
  // when the host port is forwarded already. unforward: a missing one is fine.
  [[nodiscard]] virtual Result<void> forward(const Attachment& a, const PublishedPort& p) = 0;
  virtual void unforward(const PublishedPort& p) = 0;
};
std::string_view to_string(State s);

struct Container {
  std::string id;  // 64 hex
  std::string name;
  std::string image;  // as requested
  std::string image_digest;
  State state = State::kCreated;
  int pid = 0;
  std::optional<int> exit_code;
  bool oom_killed = false;
  std::string created_at, started_at, finished_at;  // RFC 3339, "" when not yet
  int restart_count = 0;
  std::string error;  // why the last run ended abnormally (a dead monitor), else ""
  std::optional<Attachment> network;
  std::optional<Health> health;  // with a health check only
  Json config;                   // the normalized create request
};

// The API form (the contract of /1.0/containers).
Json to_json(const Container& c);

// Named volumes for containers (vireod implements it over vireo-storaged and loop mounts).
class VolumeBackend {
 public:
  virtual ~VolumeBackend() = default;
  struct Mounted {
    std::filesystem::path path;  // where the volume's file system is mounted on the host
    bool fresh = false;          // a file system was just made on it (empty)
  };
  // The volume ("POOL/VOL" or "VOL") mounted, or as it already is. kNotFound: no such volume;
  // kInvalidArgument: a volume containers cannot mount (with why).
  [[nodiscard]] virtual Result<Mounted> acquire(const std::string& volume) = 0;
  // No container uses the volume any more: unmount it (failures logged).
  virtual void release(const std::string& volume) = 0;
};

struct EngineOptions {
  std::filesystem::path state_dir;
  image::ImageStore* images = nullptr;  // not owned; outlives the engine
  std::string runtime;                  // vireo-runtime
  std::string monitor;                  // vireo-monitor
  // Lifecycle events: container-created, -started, -died, -oom, -restarted, -stopped, -deleted,
  // -healthy, -unhealthy (when the health status changes).
  // Called from any thread, never under the engine's lock.
  std::function<void(const std::string& action, const Container& c)> on_event;
  std::chrono::seconds start_timeout{30};  // bound on the monitor's ready line
  // Containers on Vireo networks; without it only network none and host work.
  NetworkBackend* networks = nullptr;  // not owned; outlives the engine
  // Named volumes (-v VOL:/path); without it only bind mounts of host paths work.
  VolumeBackend* volumes = nullptr;  // not owned; outlives the engine
};

// A command run in a running container (`vireo ct exec`), without a terminal: its output is
// captured (each stream up to kMaxExecOutput bytes, the rest dropped and flagged).
struct ExecRequest {
  std::vector<std::string> command;
  std::vector<std::string> env;  // K=V added
  std::string workdir;           // default: the container's
  std::string user;              // uid[:gid]; default: the container's
};
struct ExecResult {
  int exit_code = 0;  // 128+signal when killed
  std::string out, err;
  bool truncated = false;
};
inline constexpr size_t kMaxExecOutput = 1 << 20;

// A process of a running container (`vireo ct top`), as the host sees it.
struct ProcessInfo {
  int pid = 0;
  int uid = 0;
  std::string state;       // R, S, D, Z, ...
  double cpu_seconds = 0;  // user + system
  uint64_t rss_bytes = 0;
  std::string command;  // cmdline, arguments separated by spaces ([comm] for kernel-like ones)
};
// The request body {"command", "env"?, "workdir"?, "user"?}, parsed strictly.
[[nodiscard]] Result<ExecRequest> parse_exec_request(const Json& body);

// New limits for a container (`vireo ct update`): the fields given replace the old ones.
struct UpdateRequest {
  std::optional<int64_t> memory;
  std::optional<double> cpus;
  std::optional<int64_t> pids_limit;
  // The published ports from now on (replacing the old set; empty: none), applied live by the
  // container's monitor: new ports are bound before old ones close, established connections
  // stay.
  std::optional<std::vector<PublishedPort>> ports;
};
// {"memory"?, "cpus"?, "pids_limit"?, "ports"?}, parsed strictly (positive values, memory ≥
// 6 MiB, ports as in the create request).
[[nodiscard]] Result<UpdateRequest> parse_update_request(const Json& body);

// A running container's resource use (`vireo ct stats`): counters since it started.
struct ContainerStats {
  double cpu_seconds = 0;
  uint64_t memory_bytes = 0;
  uint64_t memory_limit = 0;  // 0: none
  uint64_t pids = 0;
  uint64_t net_rx = 0, net_tx = 0;           // bytes, every interface but lo
  uint64_t block_read = 0, block_write = 0;  // bytes
};

// Log followers get the lines that arrived (possibly none, on timeout), the cursor and whether
// the container still runs. Called on the engine's thread.
using FollowFn = std::function<void(Result<LogPage> page, bool running)>;

class Engine {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Engine>> open(EngineOptions options);
  ~Engine();

  // all=false: running (and restarting) containers only.
  std::vector<Container> list(bool all);
  // By name, full id or unique id prefix.
  [[nodiscard]] Result<Container> get(const std::string& name);

  // Errors: kInvalidArgument (bad name, no command), kNotFound (image, bind source),
  // kAlreadyExists (name taken). Nothing is left behind on failure.
  [[nodiscard]] Result<Container> create(const CreateRequest& request);
  // Already running: unchanged.
  [[nodiscard]] Result<Container> start(const std::string& name);
  // SIGTERM, then SIGKILL after timeout; disables the restart policy until the next start.
  [[nodiscard]] Result<Container> stop(const std::string& name, std::chrono::seconds timeout);
  [[nodiscard]] Result<Container> restart(const std::string& name, std::chrono::seconds timeout);
  // kConflict when not running.
  [[nodiscard]] Result<Container> kill(const std::string& name, int signal);
  // kConflict while running unless force (then killed first).
  [[nodiscard]] Result<void> remove(const std::string& name, bool force);
  // The container as its current run ended (returns at once when it does not run); kTimeout,
  // kCancelled when stop is requested.
  [[nodiscard]] Result<Container> wait(const std::string& name, std::chrono::milliseconds timeout,
                                       std::stop_token stop = {});

  [[nodiscard]] Result<LogPage> logs(const std::string& name, const LogQuery& q);
  // Runs the command through the runtime's exec; kConflict when the container does not run,
  // kTimeout after timeout (the command is killed).
  [[nodiscard]] Result<ExecResult> exec(const std::string& name, const ExecRequest& request,
                                        std::chrono::milliseconds timeout);
  // Starts the command with a terminal or pipes, for the caller to relay (ExecSession);
  // kConflict when the container does not run.
  [[nodiscard]] Result<std::unique_ptr<ExecSession>> exec_interactive(const std::string& name,
                                                                      const ExecRequest& request,
                                                                      ExecTerminal terminal,
                                                                      ExecInput input);
  // The container's processes (the runtime's `ps`, then /proc); kConflict when not running.
  [[nodiscard]] Result<std::vector<ProcessInfo>> top(const std::string& name);
  // Applies new limits: to the running container (the runtime's update) and to its saved
  // configuration, so that they hold after a restart too.
  [[nodiscard]] Result<Container> update(const std::string& name, const UpdateRequest& u);
  // From the container init's cgroups and network namespace; kConflict when not running.
  [[nodiscard]] Result<ContainerStats> stats(const std::string& name);
  // A connection to the attach socket of the container's monitor (monitor/attach.h has the
  // protocol), made through the monitor directory's fd when the path is too long for a socket
  // address. At once when the container runs; a created or restarting one is awaited until its
  // next start, at most timeout (kTimeout) or until stop (kCancelled). watching runs once the
  // wait is in place: a start requested after it is connected to before its first output.
  // kConflict when the container has exited.
  [[nodiscard]] Result<Fd> attach(const std::string& name, std::chrono::milliseconds timeout,
                                  std::stop_token stop = {},
                                  const std::function<void()>& watching = {});
  // `vireo ct cp`, on a container in any state (its root file system, not its volumes or bind
  // mounts). copy_out: container_path (symlinks resolved inside the container) to host_path, or
  // into host_path when it is a directory. copy_in: host_path into container_path when that is
  // a directory, else as container_path (its parent must exist); what is there is replaced,
  // never written through the container's symlinks. kNotFound for a missing path.
  [[nodiscard]] Result<void> copy_out(const std::string& name, const std::string& container_path,
                                      const std::filesystem::path& host_path);
  [[nodiscard]] Result<void> copy_in(const std::string& name,
                                     const std::filesystem::path& host_path,
                                     const std::string& container_path);
  // Calls done once: when lines after q.cursor arrive, the container stops running, or timeout
  // passes. Returns at once.
  void follow_logs(const std::string& name, const LogQuery& q, std::chrono::milliseconds timeout,
                   FollowFn done);

  struct Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "KILL", "SIGKILL", "9" → 9; kInvalidArgument otherwise.
[[nodiscard]] Result<int> parse_signal(std::string_view name);

}  // namespace vireo::containers
