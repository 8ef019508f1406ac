#pragma once
// Datapath: the per-thread forwarding engine. It owns the ports and the switch, reads batches
// of frames from a ready port, validates each with the parser, asks the switch where it goes,
// queues it on the output ports (zero-copy: queued frames point into the input port's buffers)
// and flushes every touched port once per batch before the input buffers are released. Nothing
// on this path allocates.
//
// Threading: vireo-netd runs one poll loop (worker) per core, each polling its own ports (see
// worker.h). A worker receives without a lock (a port's receive side belongs to one worker),
// handles the batch under the datapath's lock (switch, FDB, router, firewall, conntrack, NAT
// and DHCP state are shared), and sends it after releasing the lock, through its own
// transmit queues: the system calls, where the time goes, run in parallel. Configuration
// changes happen only while every worker is paused between batches (server.h), so they need
// no lock of their own.
#include <array>
#include <memory>
#include <mutex>
#include <vector>

#include "base/result.h"
#include "network/drop_reason.h"
#include "network/port.h"
#include "network/switch.h"
#include "network/worker.h"

namespace vireo::net {

// Handles frames addressed to an internal port (the router's leg in a network). It may queue
// replies and forwarded frames through the datapath during the call.
class InternalPortHandler {
 public:
  virtual ~InternalPortHandler() = default;
  virtual void handle(PortId port, const RxFrame& frame, const ParsedFrame& parsed,
                      uint16_t vlan) = 0;
};

class Datapath {
 public:
  static constexpr size_t kBatch = 64;

  Datapath();

  // Adds a device port; fails when every port id is taken.
  [[nodiscard]] Result<PortId> add_port(std::unique_ptr<Port> port, const PortConfig& config);
  // Adds a port without a device whose frames go to handler (the router's leg in a network).
  [[nodiscard]] Result<PortId> add_internal_port(InternalPortHandler* handler,
                                                 const PortConfig& config);
  void remove_port(PortId id);
  Port* port(PortId id) const { return id < ports_.size() ? ports_[id].device.get() : nullptr; }
  bool is_internal(PortId id) const { return id < ports_.size() && ports_[id].handler; }
  // The worker polling device port id.
  size_t owner(PortId id) const { return id < ports_.size() ? ports_[id].owner : 0; }
  void set_owner(PortId id, size_t worker) {
    if (id < ports_.size()) ports_[id].owner = worker;
  }

  // Reads and forwards what is waiting on port id; called by the worker owning it.
  void poll_port(PortId id, uint64_t now_ns);
  // Injects a frame from an internal port (router output) as if received on it. The frame's
  // memory must stay valid until the current batch is flushed.
  void inject(PortId from, const RxFrame& frame, uint64_t now_ns);
  // Sends everything the calling worker queued; called at the end of each batch, without
  // the lock.
  void flush();

  Switch& sw() { return switch_; }
  const Switch& sw() const { return switch_; }
  const DropCounters& drops() const { return drops_; }
  void count_drop(DropReason reason) { drops_.add(reason); }

 private:
  struct PortSlot {
    std::unique_ptr<Port> device;
    InternalPortHandler* handler = nullptr;
    size_t owner = 0;
  };
  // The ports a worker queued frames on during its current batch.
  struct Dirty {
    std::array<PortId, Switch::kMaxPorts> ports{};
    size_t count = 0;
    std::vector<bool> marked = std::vector<bool>(Switch::kMaxPorts, false);
  };
  Result<PortId> free_id() const;
  void handle(PortId in, const RxFrame& frame, uint64_t now_ns);
  void output(PortId out, const RxFrame& frame, const Egress& e, uint16_t vlan);

  std::vector<PortSlot> ports_;
  std::mutex mu_;  // held by a worker while it handles a batch: guards all below
  Switch switch_;
  DropCounters drops_;
  std::array<Egress, Switch::kMaxPorts> egress_{};
  PerWorker<Dirty> dirty_;
};

// The L3 size of one packet on the wire: for a GSO frame, one segment's.
uint32_t wire_l3_len(const RxFrame& frame, const ParsedFrame& parsed);

}  // namespace vireo::net
