#include "network/packet_port.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include <spdlog/spdlog.h>

#include "network/tap_port.h"
#include "network/wire.h"

namespace vireo::net {
namespace {

Result<void> set_option(int fd, int name, const void* value, socklen_t len, const char* what) {
  if (::setsockopt(fd, SOL_PACKET, name, value, len) < 0) return errno_error(what);
  return {};
}

Result<void> set_int(int fd, int name, int value, const char* what) {
  return set_option(fd, name, &value, sizeof(value), what);
}

// The kernel and we hand blocks back and forth through block_status; order the accesses.
uint32_t load_status(const tpacket_block_desc* desc) {
  return std::atomic_ref<const uint32_t>(desc->hdr.bh1.block_status)
      .load(std::memory_order_acquire);
}
void store_status(tpacket_block_desc* desc, uint32_t status) {
  std::atomic_ref<uint32_t>(desc->hdr.bh1.block_status).store(status, std::memory_order_release);
}

// V2 slots are packed kV2FramesPerBlock to a block (create rounds frame_count to whole blocks).
uint32_t v2_block_count(const PacketRingConfig& ring) {
  return ring.frame_count / PacketPort::kV2FramesPerBlock;
}

size_t ring_bytes(const PacketRingConfig& ring) {
  return ring.version == RingVersion::kV3 ? size_t{ring.block_size} * ring.block_count
                                          : size_t{PacketPort::kV2BlockSize} * v2_block_count(ring);
}

Result<Fd> open_socket(int ifindex, const PacketRingConfig& ring) {
  Fd sock(::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!sock) return errno_error("socket(AF_PACKET)");
  int fd = sock.get();
  // Order matters: version and vnet header must be set before the ring exists.
  bool v3 = ring.version == RingVersion::kV3;
  TRY(set_int(fd, PACKET_VERSION, v3 ? TPACKET_V3 : TPACKET_V2, "PACKET_VERSION"));
  TRY(set_int(fd, PACKET_VNET_HDR, 1, "PACKET_VNET_HDR"));
  tpacket_req3 req{};
  if (v3) {
    req.tp_block_size = ring.block_size;
    req.tp_block_nr = ring.block_count;
    req.tp_frame_size = 2048;
    req.tp_frame_nr = ring.block_size / 2048 * ring.block_count;
    req.tp_retire_blk_tov = ring.retire_ms;
  } else {
    req.tp_block_size = PacketPort::kV2BlockSize;
    req.tp_block_nr = v2_block_count(ring);
    req.tp_frame_size = PacketPort::kV2FrameSize;
    req.tp_frame_nr = ring.frame_count;
  }
  // tpacket_req3 starts with the four fields of tpacket_req, which V2 reads.
  socklen_t req_len = v3 ? sizeof(tpacket_req3) : sizeof(tpacket_req);
  TRY(set_option(fd, PACKET_RX_RING, &req, req_len, "PACKET_RX_RING"));
  // Frames we transmit are not ours to receive back, nor are the host stack's.
  TRY(set_int(fd, PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING"));
  TRY(set_int(fd, PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS"));
  int sndbuf = 8 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
  packet_mreq mreq{};
  mreq.mr_ifindex = ifindex;
  mreq.mr_type = PACKET_MR_PROMISC;
  TRY(set_option(fd, PACKET_ADD_MEMBERSHIP, &mreq, sizeof(mreq), "promiscuous mode"));
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(ETH_P_ALL);
  addr.sll_ifindex = ifindex;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) return errno_error("bind");
  return sock;
}

}  // namespace

Result<std::unique_ptr<PacketPort>> PacketPort::create(const std::string& ifname,
                                                       const PacketRingConfig& requested) {
  int ifindex = TRY(interface_index(ifname));
  PacketRingConfig ring = requested;
  ring.frame_count = std::max<uint32_t>(ring.frame_count, 1);
  ring.frame_count +=
      (kV2FramesPerBlock - ring.frame_count % kV2FramesPerBlock) % kV2FramesPerBlock;
  // Up first: a socket bound to a down device keeps ENETDOWN pending for its first send.
  TRY_CTX(set_link_up(ifname), "AF_PACKET port {}", ifname);
  Fd sock = TRY_CTX(open_socket(ifindex, ring), "AF_PACKET port {}", ifname);
  int pending = 0;
  socklen_t pending_len = sizeof(pending);
  ::getsockopt(sock.get(), SOL_SOCKET, SO_ERROR, &pending, &pending_len);
  void* map = ::mmap(nullptr, ring_bytes(ring), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     sock.get(), 0);
  if (map == MAP_FAILED) return errno_error("mmap packet ring of " + ifname);
  return std::unique_ptr<PacketPort>(
      new PacketPort(std::move(sock), ifname, static_cast<uint8_t*>(map), ring));
}

PacketPort::PacketPort(Fd sock, std::string ifname, uint8_t* ring, const PacketRingConfig& config)
    : sock_(std::move(sock)), ring_(ring), config_(config) {
  ifname_ = std::move(ifname);
  fd_ = sock_.get();
}

PacketPort::~PacketPort() {
  ::munmap(ring_, ring_bytes(config_));
}

size_t PacketPort::receive(std::span<RxFrame> out) {
  return config_.version == RingVersion::kV3 ? receive_v3(out) : receive_v2(out);
}

// A frame cut short by the ring's slot size would be forwarded corrupt: it is dropped. A VLAN
// tag the device took off (tag offload) is put back, into the 4 bytes before the frame that
// held the already copied virtio header, so the switch sees the frame as it was on the wire.
bool PacketPort::accept(const RingFrame& f, RxFrame& out) {
  if (f.snaplen != f.len || f.mac < sizeof(VnetHdr)) {
    ++truncated_;
    return false;
  }
  uint8_t* mac = f.base + f.mac;
  std::memcpy(&out.vnet, mac - sizeof(VnetHdr), sizeof(VnetHdr));
  out.data = mac;
  out.len = f.snaplen;
  if (!(f.status & TP_STATUS_VLAN_VALID) || f.snaplen < 12) return true;
  uint16_t tpid = (f.status & TP_STATUS_VLAN_TPID_VALID) ? f.vlan_tpid : kEtherTypeVlan;
  std::memmove(mac - kVlanTagLen, mac, 12);
  out.data = mac - kVlanTagLen;
  store_be16(out.data + 12, tpid);
  store_be16(out.data + 14, f.vlan_tci);
  out.len += kVlanTagLen;
  if (out.vnet.flags & kVnetNeedsCsum) out.vnet.csum_start += kVlanTagLen;
  if (out.vnet.gso_type != kVnetGsoNone) out.vnet.hdr_len += kVlanTagLen;
  return true;
}

size_t PacketPort::receive_v2(std::span<RxFrame> out) {
  size_t n = 0;
  while (n < out.size() && frames_held_ < config_.frame_count) {
    uint32_t index = (frame_index_ + frames_held_) % config_.frame_count;
    uint8_t* base = v2_frame(index);
    auto* hdr = reinterpret_cast<tpacket2_hdr*>(base);
    uint32_t status = std::atomic_ref<uint32_t>(hdr->tp_status).load(std::memory_order_acquire);
    if (!(status & TP_STATUS_USER)) break;
    ++frames_held_;
    RingFrame f{base,   hdr->tp_mac,      hdr->tp_snaplen,  hdr->tp_len,
                status, hdr->tp_vlan_tci, hdr->tp_vlan_tpid};
    if (accept(f, out[n])) ++n;
  }
  return n;
}

size_t PacketPort::receive_v3(std::span<RxFrame> out) {
  if (!holding_block_) {
    auto* desc = reinterpret_cast<tpacket_block_desc*>(block(block_index_));
    if (!(load_status(desc) & TP_STATUS_USER)) return 0;
    holding_block_ = true;
    left_in_block_ = desc->hdr.bh1.num_pkts;
    next_packet_ = block(block_index_) + desc->hdr.bh1.offset_to_first_pkt;
  }
  size_t n = 0;
  while (n < out.size() && left_in_block_ > 0) {
    auto* hdr = reinterpret_cast<tpacket3_hdr*>(next_packet_);
    --left_in_block_;
    next_packet_ += hdr->tp_next_offset;
    RingFrame f{reinterpret_cast<uint8_t*>(hdr),
                hdr->tp_mac,
                hdr->tp_snaplen,
                hdr->tp_len,
                hdr->tp_status,
                static_cast<uint16_t>(hdr->hv1.tp_vlan_tci),
                static_cast<uint16_t>(hdr->hv1.tp_vlan_tpid)};
    if (accept(f, out[n])) ++n;
  }
  block_done_ = left_in_block_ == 0;
  return n;
}

void PacketPort::release_rx() {
  if (config_.version == RingVersion::kV2) {
    for (; frames_held_ > 0; --frames_held_) {
      auto* hdr = reinterpret_cast<tpacket2_hdr*>(v2_frame(frame_index_));
      std::atomic_ref<uint32_t>(hdr->tp_status).store(TP_STATUS_KERNEL, std::memory_order_release);
      frame_index_ = (frame_index_ + 1) % config_.frame_count;
    }
    return;
  }
  if (!holding_block_ || !block_done_) return;
  store_status(reinterpret_cast<tpacket_block_desc*>(block(block_index_)), TP_STATUS_KERNEL);
  holding_block_ = false;
  block_done_ = false;
  block_index_ = (block_index_ + 1) % config_.block_count;
}

uint64_t PacketPort::device_drops() {
  // tpacket_stats_v3 begins with tpacket_stats; the kernel fills the one of the ring's version.
  tpacket_stats_v3 st{};
  socklen_t len =
      config_.version == RingVersion::kV3 ? sizeof(tpacket_stats_v3) : sizeof(tpacket_stats);
  if (::getsockopt(sock_.get(), SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0)
    ring_drops_ += st.tp_drops;
  return ring_drops_;
}

void PacketPort::enqueue(const RxFrame& frame, TagOp tag, uint16_t vlan) {
  TxQueue& q = tx_.mine();
  if (q.count == kTxQueue) flush();
  TxFrame& t = q.frames[q.count];
  t.build(frame, tag, vlan);
  q.msgs[q.count].msg_hdr = msghdr{};
  q.msgs[q.count].msg_hdr.msg_iov = t.iov;
  q.msgs[q.count].msg_hdr.msg_iovlen = static_cast<size_t>(t.iovcnt);
  ++q.count;
}

uint64_t PacketPort::flush() {
  TxQueue& q = tx_.mine();
  uint64_t failed = 0;
  size_t sent = 0;
  while (sent < q.count) {
    int n =
        ::sendmmsg(sock_.get(), q.msgs + sent, static_cast<unsigned>(q.count - sent), MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    // The message at the head failed (device down, buffer full): skip it and go on.
    spdlog::debug("port {}: send: {}", ifname_, std::strerror(errno));
    ++failed;
    ++sent;
  }
  q.count = 0;
  return failed;
}

}  // namespace vireo::net
