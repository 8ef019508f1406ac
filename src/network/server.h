#pragma once
// Server: the vireo-netd process body. Worker threads, one per core by default, each run an
// epoll loop over their share of the ports and forward (see datapath.h); a new port goes to
// the worker with the fewest. The control thread runs the control socket (JSON lines over a
// Unix stream socket, any number of clients), signals and the periodic tick; it applies a
// request only while every worker is paused between batches. Clients come and go without
// affecting forwarding: the configuration lives in the Controller, not in a connection.
#include <pthread.h>
#include <sys/epoll.h>

#include <atomic>
#include <thread>
#include <vector>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "base/fd.h"
#include "base/line_server.h"
#include "base/result.h"
#include "network/controller.h"
#include "network/datapath.h"

namespace vireo::net {

struct ServerOptions {
  std::filesystem::path control_socket;
  std::filesystem::path state_dir;  // empty: configuration is not persisted
  uint32_t vxlan_local = 0;         // this host's VTEP address (0: any)
  size_t threads = 0;  // datapath workers (0: one per CPU this process may use, at most 8)
};

// Pauses the workers for the control thread: a worker holds it shared while it handles what
// one epoll_wait returned, the control thread exclusively. A waiting control thread goes
// first, so a busy datapath cannot starve configuration.
class PauseGate {
 public:
  PauseGate();
  ~PauseGate();
  PauseGate(const PauseGate&) = delete;
  PauseGate& operator=(const PauseGate&) = delete;
  void lock_shared() { ::pthread_rwlock_rdlock(&lock_); }
  void unlock_shared() { ::pthread_rwlock_unlock(&lock_); }
  void lock() { ::pthread_rwlock_wrlock(&lock_); }
  void unlock() { ::pthread_rwlock_unlock(&lock_); }

 private:
  pthread_rwlock_t lock_;
};

// The number of CPUs this process may run on.
size_t usable_cpus();

class Server {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Server>> create(const ServerOptions& options);
  ~Server();

  // Runs until SIGTERM or SIGINT.
  [[nodiscard]] Result<void> run();

 private:
  struct Worker {
    Fd epoll;
    Fd wake;  // eventfd: written to stop the worker
    size_t ports = 0;
    std::thread thread;
  };

  Server() = default;
  Result<void> watch(int fd, uint64_t tag, uint32_t events);
  Result<void> make_workers(size_t count);
  void start_workers();
  void stop_workers();
  void work(size_t index);
  void on_port(PortId id, int fd, bool add);

  ServerOptions options_;
  Fd epoll_;
  Fd listener_;
  Fd signals_;
  Datapath datapath_;
  PauseGate pause_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<bool> stop_workers_{false};
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<LineClients> clients_;  // the control socket's clients
  bool stop_ = false;
};

}  // namespace vireo::net
