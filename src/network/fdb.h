#pragma once
// Fdb: the switch's forwarding database, (VLAN, MAC) → port with aging. A fixed-capacity
// open-addressing table allocated once, so learning on the datapath never allocates; when it is
// full, new addresses are not learned (their frames are flooded) and counted. Not thread-safe:
// owned by one datapath thread.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace vireo::net {

using PortId = uint16_t;
constexpr PortId kNoPort = 0xffff;

// A MAC address in the low 48 bits, first octet most significant.
using MacKey = uint64_t;
inline MacKey mac_key(const uint8_t* p) {
  return uint64_t{p[0]} << 40 | uint64_t{p[1]} << 32 | uint64_t{p[2]} << 24 | uint64_t{p[3]} << 16 |
         uint64_t{p[4]} << 8 | p[5];
}
inline bool is_multicast(MacKey mac) {
  return (mac >> 40) & 1;
}

struct FdbEntry {
  uint16_t vlan = 0;
  MacKey mac = 0;
  PortId port = kNoPort;
  uint64_t last_seen_ns = 0;
  bool is_static = false;  // never ages (the router's own addresses)
};

class Fdb {
 public:
  // capacity is rounded up to a power of two; aging_ns is how long an entry lives unrefreshed.
  Fdb(size_t capacity, uint64_t aging_ns);

  // Records that mac was seen on port in vlan at now_ns (moves it if it was elsewhere).
  void learn(uint16_t vlan, MacKey mac, PortId port, uint64_t now_ns);
  // An entry that does not age and is not moved by learning; removed with its port.
  void add_static(uint16_t vlan, MacKey mac, PortId port);
  // The port for (vlan, mac), or kNoPort when unknown or aged out.
  PortId lookup(uint16_t vlan, MacKey mac, uint64_t now_ns) const;
  // Removes entries older than the aging time. Called periodically, not per packet.
  void expire(uint64_t now_ns);
  // Removes every entry on port (port detached) or in vlan (network deleted).
  void flush_port(PortId port);
  void flush_vlan(uint16_t vlan);

  std::vector<FdbEntry> entries() const;
  size_t size() const { return size_; }
  uint64_t full_misses() const { return full_misses_; }
  uint64_t aging_ns() const { return aging_ns_; }
  void set_aging_ns(uint64_t aging_ns) { aging_ns_ = aging_ns; }

 private:
  struct Slot {
    FdbEntry entry;
    bool used = false;
  };
  size_t slot_of(uint16_t vlan, MacKey mac) const;
  size_t find(uint16_t vlan, MacKey mac) const;  // index or slots_.size()
  void erase_at(size_t index);
  template <typename Pred>
  void erase_if(Pred pred);

  std::vector<Slot> slots_;
  size_t mask_;
  size_t size_ = 0;
  uint64_t aging_ns_;
  uint64_t full_misses_ = 0;
};

}  // namespace vireo::net
