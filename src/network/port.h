#pragma once
// Port: one device the datapath exchanges frames with (a TAP it owns, or any netdev through an
// AF_PACKET ring). Every frame travels with its virtio_net_hdr, so GSO super-frames and
// checksum-offload frames pass between ports untouched. Received frames stay in the port's
// buffers until release_rx(); queued transmissions reference them until flush(), so a frame
// crosses the switch without a copy. Not thread-safe: one datapath thread drives a port.
#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>

#include "network/switch.h"

namespace vireo::net {

// struct virtio_net_hdr (linux/virtio_net.h cannot be included from C++: a field is named
// "class"). Host byte order, as TAP and PACKET_VNET_HDR use it.
struct VnetHdr {
  uint8_t flags = 0;
  uint8_t gso_type = 0;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
};
static_assert(sizeof(VnetHdr) == 10);
constexpr uint8_t kVnetNeedsCsum = 1;
constexpr uint8_t kVnetGsoNone = 0;
constexpr uint8_t kVnetGsoTcpV4 = 1;
constexpr uint8_t kVnetGsoUdp = 3;
constexpr uint8_t kVnetGsoTcpV6 = 4;
constexpr uint8_t kVnetGsoEcn = 0x80;

struct RxFrame {
  uint8_t* data = nullptr;
  uint32_t len = 0;
  VnetHdr vnet{};        // all zero for a plain frame
  uint16_t network = 0;  // overlay ports: the network the frame belongs to
};

enum class PortKind : uint8_t { kTap, kPacket, kVxlan };

class Port {
 public:
  virtual ~Port() = default;
  virtual PortKind kind() const = 0;
  const std::string& ifname() const { return ifname_; }
  int fd() const { return fd_; }

  // Fills out with received frames; returns how many. Frames are valid until release_rx().
  virtual size_t receive(std::span<RxFrame> out) = 0;
  virtual void release_rx() = 0;
  // Queues frame with a tag operation (vlan is the 802.1Q id for kPush/kRetag). The frame's
  // memory must stay valid until flush(). Flushes by itself when its queue is full.
  virtual void enqueue(const RxFrame& frame, TagOp tag, uint16_t vlan) = 0;
  // Sends what is queued; returns how many frames the kernel refused.
  virtual uint64_t flush() = 0;
  // Drops the port counted itself (bad encapsulation), or null.
  virtual const DropCounters* drops() const { return nullptr; }
  // Frames the kernel dropped on their way to us (a full receive ring or queue) so far.
  virtual uint64_t device_drops() { return 0; }

 protected:
  std::string ifname_;
  int fd_ = -1;  // owned by the implementation
};

// Scatter list for one outgoing frame: virtio header, then the frame with its tag changed.
// Fixes the header's offsets when a tag is added or removed.
struct TxFrame {
  VnetHdr vnet{};
  uint8_t tag[4]{};
  iovec iov[4]{};
  int iovcnt = 0;
  uint32_t len = 0;  // frame bytes without the virtio header

  void build(const RxFrame& frame, TagOp op, uint16_t vlan);
};

}  // namespace vireo::net
