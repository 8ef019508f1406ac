#pragma once
// VxlanPort: the VXLAN tunnel endpoint (RFC 7348) of vireo-netd, one overlay port in the switch
// carrying every network that has a VNI. Frames the switch sends to it are encapsulated (UDP,
// VXLAN header with the I flag and the network's VNI) and sent to the remote VTEPs through
// the host's IP stack: to the VTEP learned for the inner destination MAC, else to every
// static and learned VTEP of the network (head-end replication). The UDP source port is a hash
// of the inner flow (49152-65535), so the underlay spreads flows over its paths; the checksum
// is zero, as RFC 7348 recommends for IPv4. Received datagrams on the VXLAN port are checked
// (length, I flag), mapped to their network by VNI (unknown VNIs dropped and counted), their
// inner source MAC learned against the sending VTEP, and handed to the switch as frames of
// that network.
//
// The underlay is the host's: a UDP socket bound to the VXLAN port receives, a raw UDP socket
// sends (so the source port can vary per flow), and the kernel routes and resolves the VTEPs.
// Encapsulation adds 50 bytes on the wire (outer Ethernet, IPv4, UDP, VXLAN): a network whose
// MTU is M needs an underlay MTU of M + 50; larger frames are dropped and counted. TCP/IPv4
// GSO frames are segmented in software (the underlay cannot do it for us through a raw
// socket) and other GSO frames dropped and counted; segments and frames with a partial
// checksum are completed in copies. Threads: one worker receives; any worker may send (each
// through its own queue and copy buffers); the VNI map and the learned VTEPs are shared under
// a lock, since receiving learns what sending looks up.
#include <netinet/in.h>
#include <sys/socket.h>

#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "base/fd.h"
#include "base/json.h"
#include "base/result.h"
#include "network/port.h"
#include "network/worker.h"

namespace vireo::net {

class VxlanPort final : public Port {
 public:
  static constexpr uint32_t kOverhead = 50;
  static constexpr size_t kBatch = 32;
  static constexpr size_t kTxQueue = 128;
  static constexpr size_t kMaxLearned = 4096;  // inner MACs per network
  static constexpr uint64_t kLearnedAgingNs = 300'000'000'000ull;
  static constexpr size_t kScratchFrame = 9216;  // largest copied (segmented) frame

  // Listens on udp_port (bound to local, 0: any address).
  [[nodiscard]] static Result<std::unique_ptr<VxlanPort>> create(uint16_t udp_port = 4789,
                                                                 uint32_t local = 0);
  PortKind kind() const override { return PortKind::kVxlan; }

  // Carries network (the switch's id) as vni to the static VTEPs remotes; mtu is the network's.
  [[nodiscard]] Result<void> add_segment(uint16_t network, uint32_t vni,
                                         std::vector<uint32_t> remotes, uint32_t mtu);
  void remove_segment(uint16_t network);
  [[nodiscard]] Result<void> add_remote(uint16_t network, uint32_t ip);
  [[nodiscard]] Result<void> remove_remote(uint16_t network, uint32_t ip);
  std::vector<uint16_t> networks() const;
  // Static VTEPs and learned MAC → VTEP entries of network.
  Json vteps_json(uint16_t network) const;
  void expire(uint64_t now_ns);

  size_t receive(std::span<RxFrame> out) override;
  void release_rx() override {}
  void enqueue(const RxFrame& frame, TagOp tag, uint16_t vlan) override;
  uint64_t flush() override;
  const DropCounters* drops() const override { return &drops_; }

  // The UDP source port for an inner frame: a hash of its addresses and ports.
  static uint16_t source_port(const uint8_t* frame, uint32_t len);

 private:
  struct Learned {
    uint32_t vtep = 0;
    uint64_t seen_ns = 0;
  };
  struct Segment {
    uint32_t vni = 0;
    uint32_t mtu = 1450;
    std::vector<uint32_t> remotes;  // static
    std::vector<uint32_t> flood;    // static and learned VTEPs
    std::unordered_map<MacKey, Learned> learned;
  };
  struct Tx {
    uint8_t header[16];  // UDP + VXLAN
    sockaddr_in to;
    TxFrame frame;
  };
  // What one worker has queued: messages and the copies some of them point into.
  struct TxQueue {
    std::vector<Tx> tx = std::vector<Tx>(kTxQueue);
    mmsghdr msgs[kTxQueue]{};
    size_t count = 0;
    std::vector<uint8_t> scratch = std::vector<uint8_t>(kTxQueue * kScratchFrame);
    size_t scratch_used = 0;
    uint32_t single_vtep = 0;  // destinations() of a learned MAC
  };
  VxlanPort(Fd rx, Fd tx, uint16_t udp_port);
  void learn(Segment& s, MacKey mac, uint32_t vtep);
  void rebuild_flood(Segment& s);
  void queue(TxQueue& q, const Segment& s, uint32_t vtep, const RxFrame& frame, TagOp tag,
             uint16_t sport);
  // Where a frame to dst goes: its learned VTEP, else every VTEP of the segment. Valid while
  // table_mu_ is held.
  std::span<const uint32_t> destinations(const Segment& s, MacKey dst, TxQueue& q);
  // A copy buffer of kScratchFrame bytes that stays valid until the frames queued from it are
  // sent; flushes first when the copies or the queue for msgs more messages are full.
  uint8_t* scratch_slot(TxQueue& q, size_t msgs);
  void segment_tcp(TxQueue& q, const Segment& s, const RxFrame& frame, TagOp tag,
                   std::span<const uint32_t> vteps);

  Fd rx_sock_;
  Fd tx_sock_;
  uint16_t udp_port_;
  mutable std::mutex table_mu_;           // guards the next four
  std::map<uint16_t, Segment> segments_;  // by network id
  std::unordered_map<uint32_t, uint16_t> by_vni_;
  DropCounters drops_;
  uint64_t now_ns_ = 0;

  std::vector<uint8_t> rx_buffers_;  // kBatch buffers of kRxSize
  mmsghdr rx_msgs_[kBatch]{};
  iovec rx_iov_[kBatch]{};
  sockaddr_in rx_from_[kBatch]{};

  PerWorker<TxQueue> tx_;
};

}  // namespace vireo::net
