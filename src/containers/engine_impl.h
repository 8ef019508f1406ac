#pragma once
// Engine internals shared by engine.cc (the table and the lifecycle actions) and watcher.cc
// (the monitor watcher thread: exits, restart policies, auto-removal, log followers).
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "base/fd.h"
#include "base/rollback.h"
#include "containers/engine.h"

namespace vireo::containers {

using Clock = std::chrono::steady_clock;

struct Record {
  // Guarded by Impl::mu.
  Container c;
  CreateRequest req;
  std::filesystem::path dir;
  std::vector<std::string> lower_dirs;  // overlay lowers, topmost first ("" when a copy)
  int monitor_pidfd = -1;               // owned by the watcher's epoll set
  Fd ctr_pidfd;                         // the container's init, for signals
  uint64_t runs_ended = 0;
  std::optional<Container> last_exit;  // as the last run ended
  bool stopped = false;                // explicitly stopped: no restart
  bool removed = false;
  std::optional<Clock::time_point> restart_at;
  Clock::time_point run_started{};
  Backoff backoff;
  Clock::time_point health_due{};  // the next health check (running containers with one)
  uint64_t version = 0;            // bumped by each change, for ordered state.json writes

  std::mutex action;  // serializes start, stop, remove, restart of this container
  std::mutex save;    // serializes state.json writes
  uint64_t saved_version = 0;
};

struct Engine::Impl {
  EngineOptions o;
  std::filesystem::path runtime_root;

  std::mutex mu;
  std::condition_variable_any cv;  // runs_ended changed
  std::map<std::string, std::shared_ptr<Record>> by_id;
  std::deque<std::shared_ptr<Record>> graveyard;  // removed, still waitable by id
  std::map<int, std::shared_ptr<Record>> by_pidfd;
  std::vector<std::shared_ptr<Record>> ended;  // monitors found gone without a pidfd event

  struct Follower {
    std::shared_ptr<Record> rec;
    LogQuery q;
    Clock::time_point deadline;
    FollowFn done;
    int wd = -1;
  };
  std::vector<Follower> followers;
  std::map<int, int> wd_refs;

  Fd epoll, wake, inotify;
  std::thread watcher;
  bool shutting_down = false;
  std::condition_variable_any health_cv;  // a container started, or shutting down
  std::thread health;

  // --- engine.cc
  Result<std::shared_ptr<Record>> find(const std::string& name);  // locks mu
  // A copy of the container as it is now, kConflict unless it runs (exec, top, stats).
  Result<Container> running(const std::string& name);  // locks mu
  std::shared_ptr<Record> find_locked(const std::string& name, Error* error);
  void emit(const std::string& action, const Container& c);
  void persist(Record& r);                                      // not under mu
  Result<void> start_locked(const std::shared_ptr<Record>& r);  // r->action held
  Result<void> remove_locked(const std::shared_ptr<Record>& r, bool force);
  Result<void> ensure_rootfs(Record& r);
  void signal_container(Record& r, int sig);
  Result<void> load(const std::filesystem::path& dir);

  // --- exec.cc (append_exec_args below is shared with exec_session.cc)
  // Runs a command in c (running) through the runtime's exec, output captured.
  Result<ExecResult> exec_in(const Container& c, const ExecRequest& request,
                             std::chrono::milliseconds timeout);

  // --- health.cc: one thread runs the due checks of every running container, one at a time.
  void start_health();
  void stop_health();  // after shutting_down is set
  // At a start (under mu): status starting, first check after one interval.
  void reset_health(Record& r);
  void run_health();
  void check_health(const std::shared_ptr<Record>& r);

  // --- copy.cc: the container's root file system (mounted again if need be), and a copy of it.
  Result<Fd> open_rootfs(const std::string& name, Container& c);

  // --- volumes.cc
  // At create: every named volume of req mounted (released by undo on failure), added to
  // spec; a fresh one gets the image's content at its target, and its owner, first (as
  // Docker), or the container user's ownership when the image has nothing there.
  Result<void> mount_volumes(const Record& r, const CreateRequest& req, Json& spec,
                             const std::filesystem::path& rootfs, Rollback& undo);
  // At start: mounted again after a host reboot.
  Result<void> ensure_volumes(const Record& r);
  // At removal: the volumes no other container uses are unmounted.
  void release_volumes(const Record& r);

  // --- network.cc
  // kConflict when another container publishes one of req's host ports. Under mu.
  Result<void> check_ports_free(const CreateRequest& req, const Record* self = nullptr);
  // At create: the network resolved, an address reserved (released by undo on failure).
  Result<void> reserve_network(CreateRequest& req, Container& c, Rollback& undo);
  // The spec's network namespace and the generated resolv.conf and hosts of a networked
  // container (written into dir).
  Result<void> network_spec(const Record& r, Json& spec);
  // At start: the pinned namespace and the veth pair, made again when gone (host reboot).
  Result<void> ensure_network(Record& r);
  // Published ports on all addresses also become DNAT port forwards of the network (reached
  // from an uplink network's address); undone by undo. unforward_ports: those of ports.
  Result<void> forward_ports(const Container& c, const std::vector<PublishedPort>& ports,
                             Rollback& undo);
  void unforward_ports(const std::vector<PublishedPort>& ports);
  // The monitor's --netns/--publish arguments.
  std::vector<std::string> network_args(const Record& r);
  // At removal: port, veth, namespace and address released. Never fails (logs).
  void teardown_network(Record& r);

  // --- watcher.cc
  Result<void> start_watcher();
  void stop_watcher();
  void watch(const std::shared_ptr<Record>& r, Fd pidfd);  // takes mu
  void notify();
  void run();
  void handle_end(const std::shared_ptr<Record>& r);
  void run_due_restarts();
  void serve_followers(bool changed);
};

Json state_json(const Record& r);
// vireo-runtime exec's options of request, the container id and the command.
void append_exec_args(std::vector<std::string>& argv, const std::string& id,
                      const ExecRequest& request);
std::string monitor_dir(const Record& r);
int pidfd_open(pid_t pid);
// The pid in a pid file (monitor.pid, container.pid).
[[nodiscard]] Result<pid_t> read_pid(const std::filesystem::path& path);
int pidfd_signal(int pidfd, int sig);

}  // namespace vireo::containers
