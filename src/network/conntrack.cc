#include "network/conntrack.h"

#include "network/wire.h"

namespace vireo::net {
namespace {

constexpr uint64_t kSec = 1'000'000'000ull;
constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpAck = 0x10;

uint64_t timeout_ns(const Flow& f) {
  if (f.key.proto == kIpProtoTcp) {
    switch (f.state) {
      case FlowState::kNew:
        return 120 * kSec;
      case FlowState::kEstablished:
        return 3600 * kSec;
      case FlowState::kClosing:
        return 10 * kSec;
    }
  }
  if (f.key.proto == kIpProtoUdp) return (f.reply_seen ? 180 : 30) * kSec;
  return 30 * kSec;
}

}  // namespace

Conntrack::Conntrack(size_t max_flows) : max_flows_(max_flows) {
  flows_.reserve(max_flows);
}

TrackResult Conntrack::find(const FlowKey& key) {
  if (auto it = flows_.find(key); it != flows_.end()) return {&it->second, Direction::kOriginal};
  if (auto it = flows_.find(key.reversed()); it != flows_.end())
    return {&it->second, Direction::kReply};
  return {};
}

Flow* Conntrack::create(const FlowKey& key, uint64_t now_ns) {
  if (flows_.size() >= max_flows_) return nullptr;
  Flow& f = flows_[key];
  f = Flow{key};
  f.expires_ns = now_ns + timeout_ns(f);
  return &f;
}

void Conntrack::update(Flow& f, Direction direction, uint8_t tcp_flags, uint64_t now_ns) {
  ++f.packets;
  if (direction == Direction::kReply) f.reply_seen = true;
  if (f.key.proto == kIpProtoTcp) {
    if (tcp_flags & (kTcpRst | kTcpFin)) {
      f.state = FlowState::kClosing;
    } else if (f.state == FlowState::kNew && direction == Direction::kReply &&
               (tcp_flags & (kTcpSyn | kTcpAck)) == (kTcpSyn | kTcpAck)) {
      f.state = FlowState::kEstablished;
    }
  } else if (f.reply_seen) {
    f.state = FlowState::kEstablished;
  }
  f.expires_ns = now_ns + timeout_ns(f);
}

void Conntrack::expire(uint64_t now_ns) {
  std::erase_if(flows_, [&](const auto& kv) { return kv.second.expires_ns < now_ns; });
}

std::vector<Flow> Conntrack::flows() const {
  std::vector<Flow> out;
  out.reserve(flows_.size());
  for (const auto& [key, f] : flows_) out.push_back(f);
  return out;
}

}  // namespace vireo::net
