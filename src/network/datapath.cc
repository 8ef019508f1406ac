#include "network/datapath.h"

namespace vireo::net {

Datapath::Datapath() = default;

Result<PortId> Datapath::free_id() const {
  for (size_t i = 0; i < Switch::kMaxPorts; ++i)
    if (i >= ports_.size() || (!ports_[i].device && !ports_[i].handler))
      return static_cast<PortId>(i);
  return make_error(ErrorCode::kConflict, "all {} ports are in use", Switch::kMaxPorts);
}

Result<PortId> Datapath::add_port(std::unique_ptr<Port> port, const PortConfig& config) {
  PortId id = TRY(free_id());
  if (ports_.size() <= id) ports_.resize(id + 1u);
  ports_[id].device = std::move(port);
  switch_.set_port(id, config);
  return id;
}

Result<PortId> Datapath::add_internal_port(InternalPortHandler* handler, const PortConfig& config) {
  PortId id = TRY(free_id());
  if (ports_.size() <= id) ports_.resize(id + 1u);
  ports_[id].handler = handler;
  switch_.set_port(id, config);
  return id;
}

void Datapath::remove_port(PortId id) {
  if (id >= ports_.size()) return;
  flush();
  switch_.remove_port(id);
  ports_[id] = PortSlot{};
}

uint32_t wire_l3_len(const RxFrame& frame, const ParsedFrame& parsed) {
  uint32_t l3_len = parsed.ip_len ? parsed.ip_len : frame.len - parsed.l3;
  if (frame.vnet.gso_type == kVnetGsoNone || parsed.payload == 0) return l3_len;
  uint32_t segment = parsed.payload - parsed.l3 + frame.vnet.gso_size;
  return segment < l3_len ? segment : l3_len;
}

void Datapath::poll_port(PortId id, uint64_t now_ns) {
  Port* p = port(id);
  if (!p) return;
  RxFrame frames[kBatch];
  // Bounded so one busy port cannot starve the others or the control socket.
  for (int round = 0; round < 16; ++round) {
    size_t n = p->receive(frames);
    if (n) {
      std::lock_guard lock(mu_);
      for (size_t i = 0; i < n; ++i) handle(id, frames[i], now_ns);
    }
    flush();
    p->release_rx();
    if (n == 0) break;
  }
}

void Datapath::inject(PortId from, const RxFrame& frame, uint64_t now_ns) {
  handle(from, frame, now_ns);
}

void Datapath::handle(PortId in, const RxFrame& frame, uint64_t now_ns) {
  PortStats& stats = switch_.stats(in);
  ++stats.rx_packets;
  stats.rx_bytes += frame.len;
  ParsedFrame parsed;
  DropReason reason = parse_frame(frame.data, frame.len, parsed);
  if (reason != DropReason::kNone) {
    drops_.add(reason);
    ++stats.rx_dropped;
    return;
  }
  Decision d = switch_.forward(in, frame.data, parsed, wire_l3_len(frame, parsed), now_ns, egress_,
                               frame.network);
  if (d.drop != DropReason::kNone) {
    drops_.add(d.drop);
    ++stats.rx_dropped;
    return;
  }
  // The router may inject frames (and so reuse egress_) while it handles this one: deliver to
  // it after the devices. A network has at most one internal port.
  PortId internal = kNoPort;
  for (size_t i = 0; i < d.count; ++i) {
    if (ports_[egress_[i].port].handler)
      internal = egress_[i].port;
    else
      output(egress_[i].port, frame, egress_[i], d.vlan);
  }
  if (internal != kNoPort) {
    PortStats& out = switch_.stats(internal);
    ++out.tx_packets;
    out.tx_bytes += frame.len;
    ports_[internal].handler->handle(internal, frame, parsed, d.vlan);
  }
}

void Datapath::output(PortId out, const RxFrame& frame, const Egress& e, uint16_t vlan) {
  PortSlot& slot = ports_[out];
  PortStats& stats = switch_.stats(out);
  ++stats.tx_packets;
  stats.tx_bytes += frame.len;
  slot.device->enqueue(frame, e.tag, vlan);
  Dirty& dirty = dirty_.mine();
  if (!dirty.marked[out]) {
    dirty.marked[out] = true;
    dirty.ports[dirty.count++] = out;
  }
}

void Datapath::flush() {
  Dirty& dirty = dirty_.mine();
  for (size_t i = 0; i < dirty.count; ++i) {
    PortId id = dirty.ports[i];
    dirty.marked[id] = false;
    if (!ports_[id].device) continue;
    uint64_t failed = ports_[id].device->flush();
    if (failed) {
      std::lock_guard lock(mu_);
      PortStats& stats = switch_.stats(id);
      stats.tx_dropped += failed;
      stats.tx_packets -= failed;
      drops_.add(DropReason::kTxFailed, failed);
    }
  }
  dirty.count = 0;
}

}  // namespace vireo::net
