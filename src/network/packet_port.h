#pragma once
// PacketPort: any existing netdev (typically the host end of a veth pair) attached through an
// AF_PACKET socket: a TPACKET_V3 receive ring (the kernel fills blocks of frames we read in
// place), PACKET_VNET_HDR (GSO and checksum offload pass through) and batched sendmmsg for
// transmission, bypassing the qdisc. The device is put in promiscuous mode while attached.
#include <sys/socket.h>

#include <memory>

#include "base/fd.h"
#include "base/result.h"
#include "network/port.h"
#include "network/worker.h"

namespace vireo::net {

// TPACKET_V3 packs frames densely into blocks and wakes us per block: fewest wake-ups under
// load, but a partly filled block waits for retire_ms, which adds up to that much latency per
// hop (and slows TCP, whose ACKs wait). TPACKET_V2 has one fixed-size slot per frame (64 KiB
// for GSO frames) and wakes per frame. See docs/network.md for measurements.
enum class RingVersion : uint8_t { kV2, kV3 };

struct PacketRingConfig {
  RingVersion version = RingVersion::kV2;
  uint32_t block_size = 1u << 18;  // V3: holds several 64 KiB GSO frames
  uint32_t block_count = 64;
  uint32_t retire_ms = 1;      // V3: a partly filled block is handed over after this long
  uint32_t frame_count = 256;  // V2: slots of kV2FrameSize bytes (rounded up to whole blocks)
};

class PacketPort final : public Port {
 public:
  static constexpr size_t kTxQueue = 64;
  // A GSO frame of 64 KiB, its virtio header and the TPACKET header fit in one V2 slot.
  static constexpr uint32_t kV2FrameSize = 65536 + 4096;
  // The kernel backs each ring block with a power-of-two number of pages, so a block of one
  // frame would take 128 KiB for 68 KiB; 1 MiB blocks hold 15 frames with 4 KiB to spare.
  static constexpr uint32_t kV2BlockSize = 1u << 20;
  static constexpr uint32_t kV2FramesPerBlock = kV2BlockSize / kV2FrameSize;

  [[nodiscard]] static Result<std::unique_ptr<PacketPort>> create(
      const std::string& ifname, const PacketRingConfig& ring = {});
  ~PacketPort() override;

  PortKind kind() const override { return PortKind::kPacket; }
  size_t receive(std::span<RxFrame> out) override;
  void release_rx() override;
  void enqueue(const RxFrame& frame, TagOp tag, uint16_t vlan) override;
  uint64_t flush() override;
  uint64_t truncated() const { return truncated_; }
  uint64_t device_drops() override;

 private:
  PacketPort(Fd sock, std::string ifname, uint8_t* ring, const PacketRingConfig& config);
  uint8_t* block(uint32_t index) const { return ring_ + size_t{index} * config_.block_size; }
  uint8_t* v2_frame(uint32_t index) const {
    return ring_ + size_t{index / kV2FramesPerBlock} * kV2BlockSize +
           size_t{index % kV2FramesPerBlock} * kV2FrameSize;
  }
  size_t receive_v2(std::span<RxFrame> out);
  size_t receive_v3(std::span<RxFrame> out);
  struct RingFrame {
    uint8_t* base;
    uint32_t mac, snaplen, len, status;
    uint16_t vlan_tci, vlan_tpid;
  };
  bool accept(const RingFrame& f, RxFrame& out);

  Fd sock_;
  uint8_t* ring_;
  PacketRingConfig config_;
  // Read position: current block, packets left in it and the next packet header.
  uint32_t block_index_ = 0;
  uint32_t left_in_block_ = 0;
  uint8_t* next_packet_ = nullptr;
  bool holding_block_ = false;
  bool block_done_ = false;
  // V2: next slot to look at and slots taken by the current batch.
  uint32_t frame_index_ = 0;
  uint32_t frames_held_ = 0;
  uint64_t truncated_ = 0;
  uint64_t ring_drops_ = 0;  // PACKET_STATISTICS resets on each read: the sum so far

  struct TxQueue {
    TxFrame frames[kTxQueue];
    mmsghdr msgs[kTxQueue]{};
    size_t count = 0;
  };
  PerWorker<TxQueue> tx_;
};

}  // namespace vireo::net
