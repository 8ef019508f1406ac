#include "network/switch.h"

#include <algorithm>

namespace vireo::net {

Switch::Switch(size_t fdb_capacity, uint64_t aging_ns) : fdb_(fdb_capacity, aging_ns) {}

void Switch::set_port(PortId id, const PortConfig& config) {
  if (id >= kMaxPorts) return;
  if (ports_.size() <= id) ports_.resize(id + 1u);
  bool was_present = ports_[id].present;
  ports_[id].present = true;
  ports_[id].config = config;
  if (!was_present) ports_[id].stats = PortStats{};
  // Addresses learned under the old VLAN membership no longer hold.
  fdb_.flush_port(id);
}

void Switch::remove_port(PortId id) {
  if (!has_port(id)) return;
  ports_[id].present = false;
  fdb_.flush_port(id);
}

bool Switch::carries(PortId id, uint16_t vlan) const {
  if (!has_port(id) || vlan == 0) return false;
  const PortConfig& c = ports_[id].config;
  if (c.mode == VlanMode::kAccess) return c.access_vlan == vlan;
  if (c.mode == VlanMode::kOverlay)
    return std::find(c.overlay_networks.begin(), c.overlay_networks.end(), vlan) !=
           c.overlay_networks.end();
  return c.native_vlan == vlan || (vlan < 4095 && c.trunk_vlans.test(vlan));
}

uint16_t Switch::classify(PortId id, const ParsedFrame& parsed, uint16_t network) const {
  const PortConfig& c = ports_[id].config;
  // A tag with VLAN id 0 only carries a priority and belongs to the port's untagged network.
  bool tagged = parsed.tagged && parsed.vlan_id != 0;
  if (c.mode == VlanMode::kAccess) return tagged ? 0 : c.access_vlan;
  if (c.mode == VlanMode::kOverlay) return tagged || !carries(id, network) ? 0 : network;
  if (!tagged) return c.native_vlan;
  return c.trunk_vlans.test(parsed.vlan_id) ? parsed.vlan_id : 0;
}

TagOp Switch::tag_op(const PortConfig& out, uint16_t vlan, const ParsedFrame& parsed) const {
  bool leave_tagged = out.mode == VlanMode::kTrunk && out.native_vlan != vlan;
  if (!parsed.tagged) return leave_tagged ? TagOp::kPush : TagOp::kKeep;
  if (!leave_tagged) return TagOp::kPop;
  return parsed.vlan_id == vlan ? TagOp::kKeep : TagOp::kRetag;
}

bool Switch::add_egress(PortId id, uint16_t vlan, const ParsedFrame& parsed, uint32_t l3_len,
                        std::span<Egress> out, size_t& count) {
  PortState& p = ports_[id];
  if (l3_len > p.config.mtu) {
    ++p.stats.tx_dropped;
    return false;
  }
  if (count >= out.size()) return false;
  out[count++] = Egress{id, tag_op(p.config, vlan, parsed)};
  return true;
}

Decision Switch::forward(PortId in, const uint8_t* frame, const ParsedFrame& parsed,
                         uint32_t l3_len, uint64_t now_ns, std::span<Egress> out,
                         uint16_t network) {
  Decision d;
  if (!has_port(in)) {
    d.drop = DropReason::kNoPort;
    return d;
  }
  PortState& src_port = ports_[in];
  d.vlan = classify(in, parsed, network);
  if (d.vlan == 0) {
    d.drop = DropReason::kVlanNotAllowed;
    return d;
  }
  if (l3_len > src_port.config.mtu) {
    d.drop = DropReason::kMtuExceeded;
    return d;
  }
  MacKey dst = mac_key(frame);
  MacKey src = mac_key(frame + 6);
  if (!is_multicast(src)) fdb_.learn(d.vlan, src, in, now_ns);

  if (!is_multicast(dst)) {
    PortId to = fdb_.lookup(d.vlan, dst, now_ns);
    if (to == in) {
      d.drop = DropReason::kHairpin;
      return d;
    }
    if (to != kNoPort && carries(to, d.vlan)) {
      if (!add_egress(to, d.vlan, parsed, l3_len, out, d.count)) d.drop = DropReason::kMtuExceeded;
      return d;
    }
  }
  for (PortId id = 0; id < ports_.size(); ++id) {
    if (id == in || !carries(id, d.vlan)) continue;
    add_egress(id, d.vlan, parsed, l3_len, out, d.count);
  }
  return d;
}

}  // namespace vireo::net
