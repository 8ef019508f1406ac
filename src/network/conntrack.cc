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
  FlowKey reversed = key.reversed();
  // A translated connection's replies come back to the translated tuple, never the original.
  if (auto it = flows_.find(reversed); it != flows_.end() && !it->second.nat)
    return {&it->second, Direction::kReply};
  if (auto it = nat_index_.find(reversed); it != nat_index_.end())
    if (auto f = flows_.find(it->second); f != flows_.end()) return {&f->second, Direction::kReply};
  return {};
}

Flow* Conntrack::create(const FlowKey& key, uint64_t now_ns) {
  if (flows_.size() >= max_flows_) return nullptr;
  Flow& f = flows_[key];
  f = Flow{key};
  f.expires_ns = now_ns + timeout_ns(f);
  return &f;
}

Flow* Conntrack::create_nat(const FlowKey& key, const FlowKey& translated, uint64_t now_ns) {
  if (flows_.size() >= max_flows_ || flows_.contains(key) || nat_index_.contains(translated))
    return nullptr;
  Flow* f = create(key, now_ns);
  f->nat = true;
  f->translated = translated;
  nat_index_.emplace(translated, key);
  return f;
}

Flow* Conntrack::create_snat(const FlowKey& key, uint32_t nat_ip, uint64_t now_ns) {
  return create_snat(key, key, nat_ip, now_ns);
}

Flow* Conntrack::create_snat(const FlowKey& key, const FlowKey& destination, uint32_t nat_ip,
                             uint64_t now_ns) {
  FlowKey t = destination;
  t.src = nat_ip;
  bool icmp = key.proto == kIpProtoIcmp;
  if (!nat_index_.contains(t)) return create_nat(key, t, now_ns);
  // Ephemeral range as Linux uses it; the start depends on the flow so probes spread out.
  constexpr uint32_t kFirst = 32768, kCount = 61000 - 32768;
  uint32_t start = static_cast<uint32_t>(FlowKeyHash{}(key) % kCount);
  for (uint32_t i = 0; i < kCount; ++i) {
    auto port = static_cast<uint16_t>(kFirst + (start + i) % kCount);
    t.sport = port;
    if (icmp) t.dport = port;
    if (!nat_index_.contains(t)) return create_nat(key, t, now_ns);
  }
  return nullptr;
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

Flow* Conntrack::find_quoted(const FlowKey& q, FlowKey& untranslated) {
  if (auto it = nat_index_.find(q); it != nat_index_.end())
    if (auto f = flows_.find(it->second); f != flows_.end()) {
      untranslated = f->second.key;
      return &f->second;
    }
  if (auto f = flows_.find(q.reversed()); f != flows_.end() && f->second.nat) {
    untranslated = f->second.translated.reversed();
    return &f->second;
  }
  return nullptr;
}

void Conntrack::expire(uint64_t now_ns) {
  std::erase_if(flows_, [&](const auto& kv) {
    if (kv.second.expires_ns >= now_ns) return false;
    if (kv.second.nat) nat_index_.erase(kv.second.translated);
    return true;
  });
}

std::vector<Flow> Conntrack::flows() const {
  std::vector<Flow> out;
  out.reserve(flows_.size());
  for (const auto& [key, f] : flows_) out.push_back(f);
  return out;
}

}  // namespace vireo::net
