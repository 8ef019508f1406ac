#pragma once
// TapPort: a TAP device created and owned by vireo-netd (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
// offloads enabled), so the kernel hands over GSO frames and partial checksums as they are. The
// kernel side of the device is an ordinary netdev (a VM backend or a namespace's interface);
// it disappears when the port is destroyed.
#include <memory>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "network/port.h"
#include "network/worker.h"

namespace vireo::net {

class TapPort final : public Port {
 public:
  static constexpr size_t kBatch = 32;
  static constexpr size_t kBufferSize = sizeof(VnetHdr) + 65536 + 64;
  static constexpr size_t kTxQueue = 64;

  // Creates (or opens) TAP ifname and brings it up.
  [[nodiscard]] static Result<std::unique_ptr<TapPort>> create(const std::string& ifname);

  PortKind kind() const override { return PortKind::kTap; }
  size_t receive(std::span<RxFrame> out) override;
  void release_rx() override {}
  void enqueue(const RxFrame& frame, TagOp tag, uint16_t vlan) override;
  uint64_t flush() override;
  // What the kernel dropped because our queue was full (the device's tx_dropped).
  uint64_t device_drops() override;

 private:
  explicit TapPort(Fd fd, std::string ifname);

  struct TxQueue {
    TxFrame frames[kTxQueue];
    size_t count = 0;
  };

  Fd tap_;
  std::vector<uint8_t> rx_buffers_;  // kBatch buffers of kBufferSize, allocated once
  PerWorker<TxQueue> tx_;
};

// Brings interface ifname up (SIOCSIFFLAGS); shared by the port kinds.
[[nodiscard]] Result<void> set_link_up(const std::string& ifname);
// The interface index of ifname.
[[nodiscard]] Result<int> interface_index(const std::string& ifname);

}  // namespace vireo::net
