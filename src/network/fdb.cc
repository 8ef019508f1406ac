#include "network/fdb.h"

#include <bit>

namespace vireo::net {

Fdb::Fdb(size_t capacity, uint64_t aging_ns)
    : slots_(std::bit_ceil(capacity < 16 ? size_t{16} : capacity)),
      mask_(slots_.size() - 1),
      aging_ns_(aging_ns) {}

size_t Fdb::slot_of(uint16_t vlan, MacKey mac) const {
  uint64_t h = (mac | uint64_t{vlan} << 48) * 0x9e3779b97f4a7c15ull;
  return static_cast<size_t>(h >> 32) & mask_;
}

size_t Fdb::find(uint16_t vlan, MacKey mac) const {
  for (size_t i = slot_of(vlan, mac);; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (!s.used) return slots_.size();
    if (s.entry.mac == mac && s.entry.vlan == vlan) return i;
  }
}

void Fdb::learn(uint16_t vlan, MacKey mac, PortId port, uint64_t now_ns) {
  size_t i = slot_of(vlan, mac);
  for (;; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (!s.used) break;
    if (s.entry.mac == mac && s.entry.vlan == vlan) {
      if (s.entry.is_static) return;
      s.entry.port = port;
      s.entry.last_seen_ns = now_ns;
      return;
    }
  }
  // Keep a quarter free so probe sequences stay short and always end at an empty slot.
  if (size_ + 1 > slots_.size() * 3 / 4) {
    ++full_misses_;
    return;
  }
  slots_[i] = Slot{FdbEntry{vlan, mac, port, now_ns}, true};
  ++size_;
}

void Fdb::add_static(uint16_t vlan, MacKey mac, PortId port) {
  size_t i = find(vlan, mac);
  if (i != slots_.size()) erase_at(i);
  learn(vlan, mac, port, 0);
  i = find(vlan, mac);
  if (i != slots_.size()) slots_[i].entry.is_static = true;
}

PortId Fdb::lookup(uint16_t vlan, MacKey mac, uint64_t now_ns) const {
  size_t i = find(vlan, mac);
  if (i == slots_.size()) return kNoPort;
  const FdbEntry& e = slots_[i].entry;
  if (!e.is_static && now_ns - e.last_seen_ns > aging_ns_) return kNoPort;
  return e.port;
}

// Backward-shift deletion: later entries of the same probe run move up so lookups that pass
// this slot still find them, without tombstones.
void Fdb::erase_at(size_t index) {
  size_t hole = index;
  for (size_t i = (hole + 1) & mask_; slots_[i].used; i = (i + 1) & mask_) {
    size_t home = slot_of(slots_[i].entry.vlan, slots_[i].entry.mac);
    // Move i into the hole when its home is not cyclically within (hole, i].
    bool home_in_range = hole < i ? (home > hole && home <= i) : (home > hole || home <= i);
    if (home_in_range) continue;
    slots_[hole] = slots_[i];
    hole = i;
  }
  slots_[hole] = Slot{};
  --size_;
}

template <typename Pred>
void Fdb::erase_if(Pred pred) {
  // Restart the scan at a slot after an erase, since shifting may move an entry into it.
  for (size_t i = 0; i < slots_.size();) {
    if (slots_[i].used && pred(slots_[i].entry)) {
      erase_at(i);
      continue;
    }
    ++i;
  }
}

void Fdb::expire(uint64_t now_ns) {
  erase_if([&](const FdbEntry& e) { return !e.is_static && now_ns - e.last_seen_ns > aging_ns_; });
}
void Fdb::flush_port(PortId port) {
  erase_if([&](const FdbEntry& e) { return e.port == port; });
}
void Fdb::flush_vlan(uint16_t vlan) {
  erase_if([&](const FdbEntry& e) { return e.vlan == vlan; });
}

std::vector<FdbEntry> Fdb::entries() const {
  std::vector<FdbEntry> out;
  for (const Slot& s : slots_)
    if (s.used) out.push_back(s.entry);
  return out;
}

}  // namespace vireo::net
