#pragma once
// Switch: the L2 forwarding decision of vireo-netd. It knows ports only by id and
// configuration (VLAN mode, MTU) and turns one received frame into the list of ports it goes
// out of, with the VLAN tag operation for each: MAC learning with aging, flooding of broadcast,
// multicast and unknown unicast, 802.1Q access and trunk ports. It never touches devices, so the
// datapath owns I/O and this class is tested with plain buffers.
//
// VLAN ids here are internal network ids: 1..4094 are also 802.1Q ids on trunks; a network
// without a VLAN gets an id from 4096 up, which only access ports can carry.
// Not thread-safe: owned by one datapath thread.
#include <bitset>
#include <cstdint>
#include <span>
#include <vector>

#include "network/drop_reason.h"
#include "network/fdb.h"
#include "network/parser.h"

namespace vireo::net {

// kOverlay: a port carrying several networks whose frames say which network they belong to
// (RxFrame::network), such as the VXLAN endpoint; frames leave it untagged.
enum class VlanMode : uint8_t { kAccess, kTrunk, kOverlay };

struct PortConfig {
  VlanMode mode = VlanMode::kAccess;
  uint16_t access_vlan = 0;                // kAccess: the network this port belongs to
  std::bitset<4096> trunk_vlans;           // kTrunk: 802.1Q ids carried tagged
  uint16_t native_vlan = 0;                // kTrunk: network of untagged frames, 0 = drop them
  uint32_t mtu = 1500;                     // largest L3 packet accepted in or sent out
  std::vector<uint16_t> overlay_networks;  // kOverlay: the networks carried
};

struct PortStats {
  uint64_t rx_packets = 0, rx_bytes = 0, rx_dropped = 0;
  uint64_t tx_packets = 0, tx_bytes = 0, tx_dropped = 0;
};

// kRetag replaces a priority-only tag (VLAN id 0) with the network's id.
enum class TagOp : uint8_t { kKeep, kPush, kPop, kRetag };

struct Egress {
  PortId port = kNoPort;
  TagOp tag = TagOp::kKeep;
};

struct Decision {
  DropReason drop = DropReason::kNone;
  uint16_t vlan = 0;  // network the frame was classified into
  size_t count = 0;   // entries written to the egress span
};

class Switch {
 public:
  static constexpr size_t kMaxPorts = 1024;

  explicit Switch(size_t fdb_capacity = 16384, uint64_t aging_ns = 300'000'000'000ull);

  void set_port(PortId id, const PortConfig& config);
  void remove_port(PortId id);
  bool has_port(PortId id) const { return id < ports_.size() && ports_[id].present; }
  const PortConfig& config(PortId id) const { return ports_[id].config; }
  PortStats& stats(PortId id) { return ports_[id].stats; }
  const PortStats& stats(PortId id) const { return ports_[id].stats; }
  // Forgets every address of a network (it was deleted).
  void flush_vlan(uint16_t vlan) { fdb_.flush_vlan(vlan); }

  // Decides where frame goes. l3_len is the L3 size checked against MTUs (for a GSO frame, one
  // segment's size); network is the frame's network as an overlay port says it. Writes at most
  // out.size() egress entries.
  Decision forward(PortId in, const uint8_t* frame, const ParsedFrame& parsed, uint32_t l3_len,
                   uint64_t now_ns, std::span<Egress> out, uint16_t network = 0);

  Fdb& fdb() { return fdb_; }
  const Fdb& fdb() const { return fdb_; }
  // Ports that carry vlan, for the control API.
  bool carries(PortId id, uint16_t vlan) const;

 private:
  struct PortState {
    bool present = false;
    PortConfig config;
    PortStats stats;
  };
  // The network of a frame arriving on in, or 0 when the port does not accept it.
  uint16_t classify(PortId id, const ParsedFrame& parsed, uint16_t network) const;
  TagOp tag_op(const PortConfig& out, uint16_t vlan, const ParsedFrame& parsed) const;
  bool add_egress(PortId id, uint16_t vlan, const ParsedFrame& parsed, uint32_t l3_len,
                  std::span<Egress> out, size_t& count);

  std::vector<PortState> ports_;
  Fdb fdb_;
};

}  // namespace vireo::net
