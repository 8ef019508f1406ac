#pragma once
// Conntrack: the connection tracker behind the stateful firewall. A connection is keyed by its
// 5-tuple as first seen (the original direction); a packet matches it in either direction.
// A translated (NAT) connection also records the tuple its original-direction packets carry
// after translation; replies are matched against that tuple reversed, through a second index.
// TCP connections follow a reduced state machine (SYN seen → established → closing) with a
// timeout per state; UDP and ICMP echo have idle timeouts. Entries are allocated when a
// connection is created, never per packet, and expired by tick(). Not thread-safe.
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace vireo::net {

struct FlowKey {
  uint32_t src = 0, dst = 0;
  uint16_t sport = 0, dport = 0;  // ICMP echo: the identifier in both
  uint8_t proto = 0;
  bool operator==(const FlowKey&) const = default;
  FlowKey reversed() const { return FlowKey{dst, src, dport, sport, proto}; }
};

struct FlowKeyHash {
  size_t operator()(const FlowKey& k) const {
    uint64_t a = uint64_t{k.src} << 32 | k.dst;
    uint64_t b = uint64_t{k.sport} << 24 | uint64_t{k.dport} << 8 | k.proto;
    return static_cast<size_t>((a * 0x9e3779b97f4a7c15ull) ^ (b * 0xc2b2ae3d27d4eb4full));
  }
};

enum class FlowState : uint8_t { kNew, kEstablished, kClosing };

struct Flow {
  FlowKey key;  // original direction
  FlowState state = FlowState::kNew;
  bool reply_seen = false;
  uint64_t expires_ns = 0;
  uint64_t packets = 0;
  bool nat = false;
  FlowKey translated;  // nat: the original direction's tuple after translation
};

enum class Direction : uint8_t { kOriginal, kReply };

struct TrackResult {
  Flow* flow = nullptr;  // null: no connection yet
  Direction direction = Direction::kOriginal;
};

class Conntrack {
 public:
  explicit Conntrack(size_t max_flows = 65536);

  TrackResult find(const FlowKey& key);
  // Creates the connection for a packet the firewall allowed; null when the table is full.
  Flow* create(const FlowKey& key, uint64_t now_ns);
  // Creates a translated connection: packets of key leave as translated. Null when the table is
  // full or translated is taken by another connection.
  Flow* create_nat(const FlowKey& key, const FlowKey& translated, uint64_t now_ns);
  // Source NAT: picks a source port (ICMP echo: identifier) on nat_ip that no other translated
  // connection to the same destination uses, keeping the original one when it is free.
  Flow* create_snat(const FlowKey& key, uint32_t nat_ip, uint64_t now_ns);
  // Both: the destination becomes destination's (a port forward), the source nat_ip with a
  // free port (so the forward's target answers through the router: hairpin NAT).
  Flow* create_snat(const FlowKey& key, const FlowKey& destination, uint32_t nat_ip,
                    uint64_t now_ns);
  // Advances the connection's state with one packet (tcp_flags 0 for UDP/ICMP).
  void update(Flow& flow, Direction direction, uint8_t tcp_flags, uint64_t now_ns);
  // The NAT connection a packet quoted in an ICMP error belongs to, seen after translation
  // (either direction); untranslated receives the quoted tuple as it was before translation.
  Flow* find_quoted(const FlowKey& quoted, FlowKey& untranslated);
  void expire(uint64_t now_ns);
  std::vector<Flow> flows() const;
  size_t size() const { return flows_.size(); }

 private:
  size_t max_flows_;
  std::unordered_map<FlowKey, Flow, FlowKeyHash> flows_;
  // Translated tuple → original key of a NAT connection.
  std::unordered_map<FlowKey, FlowKey, FlowKeyHash> nat_index_;
};

}  // namespace vireo::net
