// The interactive serial console of a running VM over a WebSocket:
// GET /1.0/vms/{name}/console/attach (upgrade). The viewer first gets the console's recent
// output (the ring log's backlog), then every byte the guest prints; what it sends is typed on
// the guest's serial port. Several viewers may be attached at once (ConsoleLog fans out); a
// viewer that lets more than kMaxQueued bytes pile up is dropped rather than slowing the others.
// The stream closes when QEMU exits.
#include "daemon/vm_console.h"

#include <mutex>

#include "base/log.h"

namespace vireo::daemon {

namespace {

constexpr size_t kMaxQueued = 4 << 20;

// One viewer: its subscription to the console, held until its WebSocket closes. The session
// keeps the VmProcess (and so the ConsoleLog) alive while it lasts.
struct ConsoleSession {
  std::shared_ptr<compute::VmProcess> process;
  std::mutex mu;
  std::optional<uint64_t> subscription;  // guarded by mu
  bool closed = false;                   // guarded by mu

  void end() {
    std::optional<uint64_t> sub;
    {
      std::lock_guard lock(mu);
      closed = true;
      sub.swap(subscription);
    }
    if (sub) process->console()->unsubscribe(*sub);
  }
};

void attach(std::shared_ptr<compute::VmProcess> process, server::UpgradeResponder& respond) {
  compute::ConsoleLog* console = process->console();
  if (!console) {
    respond(make_error(ErrorCode::kUnavailable,
                       "the VM's console is not connected (another client holds QEMU's socket)"));
    return;
  }
  auto session = std::make_shared<ConsoleSession>();
  session->process = std::move(process);
  std::weak_ptr<ConsoleSession> weak = session;
  auto ws = respond(server::WebSocketHandlers{
      .on_message =
          [weak](std::string input, server::MessageKind) {
            auto s = weak.lock();
            if (!s) return;
            if (auto r = s->process->console()->write(input); !r)
              spdlog::debug("console input: {}", r.error().message());
          },
      .on_closed = [session] { session->end(); },
  });
  if (!ws) return;
  std::weak_ptr<server::WebSocket> weak_ws = ws;
  std::string backlog;
  uint64_t id = console->subscribe(
      [weak_ws](std::string_view chunk) {
        auto w = weak_ws.lock();
        if (!w) return;
        if (chunk.empty()) return w->close("the VM stopped");
        if (w->queued_bytes() > kMaxQueued) return w->close("viewer too slow; reattach");
        w->send(std::string(chunk));
      },
      &backlog);
  if (!backlog.empty()) ws->send(std::move(backlog));
  std::lock_guard lock(session->mu);
  if (session->closed) {
    console->unsubscribe(id);  // the viewer left while we subscribed
    return;
  }
  session->subscription = id;
}

}  // namespace

void add_vm_console_route(server::Router& router, RunningVm running) {
  router.add_upgrade("/1.0/vms/{name}/console/attach",
                     [running](server::Request& req, server::UpgradeResponder respond) {
                       auto process = running(req.params["name"]);
                       if (!process) {
                         respond(std::unexpected(process.error()));
                         return;
                       }
                       attach(std::move(*process), respond);
                     });
}

}  // namespace vireo::daemon
