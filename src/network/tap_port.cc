#include "network/tap_port.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>

#include "base/file.h"

namespace vireo::net {
namespace {

Result<ifreq> make_ifreq(const std::string& ifname) {
  ifreq ifr{};
  if (ifname.empty() || ifname.size() >= IFNAMSIZ)
    return make_error(ErrorCode::kInvalidArgument, "invalid interface name '{}'", ifname);
  std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());
  return ifr;
}

}  // namespace

Result<void> set_link_up(const std::string& ifname) {
  ifreq ifr = TRY(make_ifreq(ifname));
  Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) return errno_error("socket");
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &ifr) < 0) return errno_error("get flags of " + ifname);
  if (ifr.ifr_flags & IFF_UP) return {};
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &ifr) < 0) return errno_error("set " + ifname + " up");
  return {};
}

Result<int> interface_index(const std::string& ifname) {
  TRY(make_ifreq(ifname));
  unsigned index = ::if_nametoindex(ifname.c_str());
  if (index == 0) {
    if (errno == ENODEV || errno == ENXIO)
      return make_error(ErrorCode::kNotFound, "interface {} not found", ifname);
    return errno_error("interface " + ifname);
  }
  return static_cast<int>(index);
}

TapPort::TapPort(Fd fd, std::string ifname)
    : tap_(std::move(fd)), rx_buffers_(kBatch * kBufferSize) {
  ifname_ = std::move(ifname);
  fd_ = tap_.get();
}

Result<std::unique_ptr<TapPort>> TapPort::create(const std::string& ifname) {
  ifreq ifr = TRY(make_ifreq(ifname));
  Fd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return errno_error("open /dev/net/tun");
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) return errno_error("create TAP " + ifname);
  int hdr_size = sizeof(VnetHdr);
  if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr_size) < 0) return errno_error("TUNSETVNETHDRSZ");
  // We accept what the kernel would otherwise segment or checksum for us.
  unsigned offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
  if (::ioctl(fd.get(), TUNSETOFFLOAD, offloads) < 0) return errno_error("TUNSETOFFLOAD");
  TRY_CTX(set_link_up(ifname), "TAP {}", ifname);
  return std::unique_ptr<TapPort>(new TapPort(std::move(fd), ifname));
}

size_t TapPort::receive(std::span<RxFrame> out) {
  size_t n = 0;
  size_t limit = std::min(out.size(), kBatch);
  while (n < limit) {
    uint8_t* buf = rx_buffers_.data() + n * kBufferSize;
    ssize_t got = ::read(tap_.get(), buf, kBufferSize);
    if (got < 0) break;  // EAGAIN: drained
    if (static_cast<size_t>(got) < sizeof(VnetHdr)) continue;
    RxFrame& f = out[n++];
    std::memcpy(&f.vnet, buf, sizeof(VnetHdr));
    f.data = buf + sizeof(VnetHdr);
    f.len = static_cast<uint32_t>(got - static_cast<ssize_t>(sizeof(VnetHdr)));
  }
  return n;
}

uint64_t TapPort::device_drops() {
  auto text = read_file("/sys/class/net/" + ifname_ + "/statistics/tx_dropped");
  return text ? std::strtoull(text->c_str(), nullptr, 10) : 0;
}

void TapPort::enqueue(const RxFrame& frame, TagOp tag, uint16_t vlan) {
  TxQueue& q = tx_.mine();
  if (q.count == kTxQueue) flush();
  q.frames[q.count++].build(frame, tag, vlan);
}

uint64_t TapPort::flush() {
  uint64_t failed = 0;
  // A TAP is a character device: one writev per frame is the only way in.
  TxQueue& q = tx_.mine();
  for (size_t i = 0; i < q.count; ++i)
    if (::writev(tap_.get(), q.frames[i].iov, q.frames[i].iovcnt) < 0) ++failed;
  q.count = 0;
  return failed;
}

}  // namespace vireo::net
