#pragma once
// Server: the vireo-netd process body. One epoll loop drives the datapath (port fds), the
// control socket (JSON lines over a Unix stream socket, any number of clients) and signals.
// Clients come and go without affecting forwarding: the configuration lives in the
// Controller, not in a connection. Single-threaded (see datapath.h).
#include <sys/epoll.h>

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
};

class Server {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Server>> create(const ServerOptions& options);
  ~Server();

  // Runs until SIGTERM or SIGINT.
  [[nodiscard]] Result<void> run();

 private:
  Server() = default;
  Result<void> watch(int fd, uint64_t tag, uint32_t events);
  void on_port(PortId id, int fd, bool add);

  ServerOptions options_;
  Fd epoll_;
  Fd listener_;
  Fd signals_;
  Datapath datapath_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<LineClients> clients_;  // the control socket's clients
  bool stop_ = false;
};

}  // namespace vireo::net
