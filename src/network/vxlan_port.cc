#include "network/vxlan_port.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <time.h>

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

#include "network/ipv4.h"
#include "network/parser.h"
#include "network/wire.h"

namespace vireo::net {
namespace {

constexpr size_t kRxSize = 65536;
constexpr uint8_t kVxlanFlagVni = 0x08;

uint64_t monotonic_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}

// Completes the L4 checksum the sender left to the device (virtio NEEDS_CSUM).
void complete_checksum(uint8_t* frame, uint32_t len, const VnetHdr& vnet) {
  uint32_t start = vnet.csum_start, field = start + vnet.csum_offset;
  if (start >= len || field + 2 > len) return;
  store_be16(frame + field, checksum(frame + start, len - start));
}

}  // namespace

Result<std::unique_ptr<VxlanPort>> VxlanPort::create(uint16_t udp_port, uint32_t local) {
  Fd rx(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!rx) return errno_error("socket(UDP)");
  int size = 8 << 20;
  ::setsockopt(rx.get(), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(udp_port);
  addr.sin_addr.s_addr = htonl(local);
  if (::bind(rx.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0)
    return errno_error(fmt::format("bind VXLAN port {}:{}", format_ipv4(local), udp_port));
  // Raw UDP: we write the UDP header ourselves, so the source port can carry flow entropy.
  Fd tx(::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP));
  if (!tx) return errno_error("socket(SOCK_RAW, UDP)");
  // Sent from the bound address too: a remote learns inner MACs at the address it sees.
  addr.sin_port = 0;
  if (local && ::bind(tx.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0)
    return errno_error(fmt::format("bind VXLAN source address {}", format_ipv4(local)));
  // A raw UDP socket also receives a copy of every UDP datagram: filter them all out.
  sock_filter drop_all{BPF_RET | BPF_K, 0, 0, 0};
  sock_fprog prog{1, &drop_all};
  if (::setsockopt(tx.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0)
    return errno_error("SO_ATTACH_FILTER");
  ::setsockopt(tx.get(), SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
  return std::unique_ptr<VxlanPort>(new VxlanPort(std::move(rx), std::move(tx), udp_port));
}

VxlanPort::VxlanPort(Fd rx, Fd tx, uint16_t udp_port)
    : rx_sock_(std::move(rx)),
      tx_sock_(std::move(tx)),
      udp_port_(udp_port),
      rx_buffers_(kBatch * kRxSize) {
  ifname_ = fmt::format("vxlan:{}", udp_port);
  fd_ = rx_sock_.get();
  for (size_t i = 0; i < kBatch; ++i) {
    rx_iov_[i] = {rx_buffers_.data() + i * kRxSize, kRxSize};
    rx_msgs_[i].msg_hdr.msg_iov = &rx_iov_[i];
    rx_msgs_[i].msg_hdr.msg_iovlen = 1;
  }
}

Result<void> VxlanPort::add_segment(uint16_t network, uint32_t vni, std::vector<uint32_t> remotes,
                                    uint32_t mtu) {
  std::lock_guard lock(table_mu_);
  if (vni == 0 || vni > 0xffffff)
    return make_error(ErrorCode::kInvalidArgument, "VNI {} is not in 1-16777215", vni);
  if (by_vni_.contains(vni))
    return make_error(ErrorCode::kAlreadyExists, "VNI {} is used by another network", vni);
  Segment& s = segments_[network];
  s = Segment{};
  s.vni = vni;
  s.mtu = mtu;
  s.remotes = std::move(remotes);
  rebuild_flood(s);
  by_vni_[vni] = network;
  return {};
}

void VxlanPort::remove_segment(uint16_t network) {
  std::lock_guard lock(table_mu_);
  auto it = segments_.find(network);
  if (it == segments_.end()) return;
  by_vni_.erase(it->second.vni);
  segments_.erase(it);
}

Result<void> VxlanPort::add_remote(uint16_t network, uint32_t ip) {
  std::lock_guard lock(table_mu_);
  Segment& s = segments_.at(network);
  if (std::find(s.remotes.begin(), s.remotes.end(), ip) != s.remotes.end())
    return make_error(ErrorCode::kAlreadyExists, "VTEP {} is already a remote", format_ipv4(ip));
  s.remotes.push_back(ip);
  rebuild_flood(s);
  return {};
}

Result<void> VxlanPort::remove_remote(uint16_t network, uint32_t ip) {
  std::lock_guard lock(table_mu_);
  Segment& s = segments_.at(network);
  if (!std::erase(s.remotes, ip))
    return make_error(ErrorCode::kNotFound, "VTEP {} is not a remote", format_ipv4(ip));
  rebuild_flood(s);
  return {};
}

std::vector<uint16_t> VxlanPort::networks() const {
  std::lock_guard lock(table_mu_);
  std::vector<uint16_t> out;
  for (const auto& [network, s] : segments_) out.push_back(network);
  return out;
}

Json VxlanPort::vteps_json(uint16_t network) const {
  std::lock_guard lock(table_mu_);
  auto it = segments_.find(network);
  if (it == segments_.end()) return Json::object();
  const Segment& s = it->second;
  Json remotes = Json::array(), learned = Json::array();
  for (uint32_t ip : s.remotes) remotes.push_back(format_ipv4(ip));
  for (const auto& [mac, l] : s.learned)
    learned.push_back(Json{{"mac", format_mac(mac)}, {"vtep", format_ipv4(l.vtep)}});
  return Json{{"vni", s.vni}, {"remotes", remotes}, {"learned", learned}};
}

void VxlanPort::rebuild_flood(Segment& s) {
  s.flood = s.remotes;
  for (const auto& [mac, l] : s.learned)
    if (std::find(s.flood.begin(), s.flood.end(), l.vtep) == s.flood.end())
      s.flood.push_back(l.vtep);
}

void VxlanPort::learn(Segment& s, MacKey mac, uint32_t vtep) {
  if (is_multicast(mac)) return;
  auto it = s.learned.find(mac);
  if (it != s.learned.end()) {
    it->second.seen_ns = now_ns_;
    if (it->second.vtep == vtep) return;
    it->second.vtep = vtep;  // the MAC moved to another host
  } else {
    if (s.learned.size() >= kMaxLearned) return;
    s.learned.emplace(mac, Learned{vtep, now_ns_});
  }
  if (std::find(s.flood.begin(), s.flood.end(), vtep) == s.flood.end()) s.flood.push_back(vtep);
}

void VxlanPort::expire(uint64_t now_ns) {
  std::lock_guard lock(table_mu_);
  for (auto& [network, s] : segments_) {
    size_t removed = std::erase_if(
        s.learned, [&](const auto& kv) { return kv.second.seen_ns + kLearnedAgingNs < now_ns; });
    if (removed) rebuild_flood(s);
  }
}

size_t VxlanPort::receive(std::span<RxFrame> out) {
  size_t want = std::min(out.size(), kBatch);
  for (size_t i = 0; i < want; ++i) {
    rx_msgs_[i].msg_hdr.msg_name = &rx_from_[i];
    rx_msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
  }
  int got =
      ::recvmmsg(rx_sock_.get(), rx_msgs_, static_cast<unsigned>(want), MSG_DONTWAIT, nullptr);
  if (got <= 0) return 0;
  std::lock_guard lock(table_mu_);
  now_ns_ = monotonic_ns();
  size_t n = 0;
  for (int i = 0; i < got; ++i) {
    uint8_t* msg = rx_buffers_.data() + size_t(i) * kRxSize;
    auto len = static_cast<uint32_t>(rx_msgs_[i].msg_len);
    if (rx_msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) {
      drops_.add(DropReason::kVxlanTruncated);
      continue;
    }
    uint32_t vni = 0;
    DropReason r = parse_vxlan_header(msg, len, vni);
    if (r != DropReason::kNone) {
      drops_.add(r);
      continue;
    }
    auto network = by_vni_.find(vni);
    if (network == by_vni_.end()) {
      drops_.add(DropReason::kVxlanUnknownVni);
      continue;
    }
    uint8_t* inner = msg + kVxlanHeaderLen;
    learn(segments_[network->second], mac_key(inner + 6), ntohl(rx_from_[i].sin_addr.s_addr));
    out[n++] = RxFrame{inner, len - kVxlanHeaderLen, VnetHdr{}, network->second};
  }
  return n;
}

uint16_t VxlanPort::source_port(const uint8_t* frame, uint32_t len) {
  uint64_t h = mix(mac_key(frame), mac_key(frame + 6));
  uint32_t l3 = kEthHeaderLen;
  uint16_t type = load_be16(frame + 12);
  if (type == kEtherTypeVlan && len >= kEthHeaderLen + kVlanTagLen) {
    type = load_be16(frame + 16);
    l3 += kVlanTagLen;
  }
  if (type == kEtherTypeIpv4 && len >= l3 + 20) {
    const uint8_t* ip = frame + l3;
    h = mix(h, load_be32(ip + 12));
    h = mix(h, load_be32(ip + 16));
    h = mix(h, ip[9]);
    uint32_t header = uint32_t{ip[0] & 0x0fu} * 4;
    bool first = (load_be16(ip + 6) & 0x1fff) == 0;
    if ((ip[9] == kIpProtoTcp || ip[9] == kIpProtoUdp) && first && header >= 20 &&
        len >= l3 + header + 4)
      h = mix(h, load_be32(ip + header));
  }
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return static_cast<uint16_t>(49152 + h % 16384);
}

std::span<const uint32_t> VxlanPort::destinations(const Segment& s, MacKey dst, TxQueue& q) {
  if (!is_multicast(dst)) {
    if (auto l = s.learned.find(dst); l != s.learned.end()) {
      q.single_vtep = l->second.vtep;
      return {&q.single_vtep, 1};
    }
  }
  return s.flood;
}

uint8_t* VxlanPort::scratch_slot(TxQueue& q, size_t msgs) {
  if (q.scratch_used == kTxQueue || q.count + msgs > kTxQueue) flush();
  return q.scratch.data() + q.scratch_used++ * kScratchFrame;
}

void VxlanPort::enqueue(const RxFrame& in, TagOp tag, uint16_t vlan) {
  std::lock_guard lock(table_mu_);
  auto it = segments_.find(vlan);
  if (it == segments_.end() || in.len < kEthHeaderLen + (tag == TagOp::kPop ? kVlanTagLen : 0)) {
    drops_.add(DropReason::kVxlanNoSegment);
    return;
  }
  const Segment& s = it->second;
  TxQueue& q = tx_.mine();
  std::span<const uint32_t> vteps = destinations(s, mac_key(in.data), q);
  if (vteps.empty()) return;
  if (in.vnet.gso_type != kVnetGsoNone) return segment_tcp(q, s, in, tag, vteps);
  uint32_t l3_len = in.len - kEthHeaderLen - (tag == TagOp::kPop ? kVlanTagLen : 0);
  if (l3_len > s.mtu) {
    drops_.add(DropReason::kMtuExceeded);
    return;
  }
  uint16_t sport = source_port(in.data, in.len);
  RxFrame frame = in;
  if (in.vnet.flags & kVnetNeedsCsum) {
    if (in.len > kScratchFrame) {
      drops_.add(DropReason::kMtuExceeded);
      return;
    }
    uint8_t* copy = scratch_slot(q, vteps.size());
    std::memcpy(copy, in.data, in.len);
    complete_checksum(copy, in.len, in.vnet);
    frame.data = copy;
    frame.vnet = VnetHdr{};
  }
  for (uint32_t vtep : vteps) queue(q, s, vtep, frame, tag, sport);
}

// Cuts a TCP/IPv4 GSO frame into segments of gso_size payload bytes, as the device would:
// consecutive sequence numbers and IP ids, FIN and PSH on the last segment only, CWR on the
// first only, checksums computed in full. Segments leave untagged.
void VxlanPort::segment_tcp(TxQueue& q, const Segment& s, const RxFrame& in, TagOp tag,
                            std::span<const uint32_t> vteps) {
  constexpr uint8_t kFin = 0x01, kPsh = 0x08, kCwr = 0x80;
  uint32_t skip = tag == TagOp::kPop ? kVlanTagLen : 0;
  uint32_t l2 = kEthHeaderLen + skip;
  uint8_t type = in.vnet.gso_type & ~kVnetGsoEcn;
  if (type != kVnetGsoTcpV4 || in.len < l2 + 40 ||
      load_be16(in.data + 12 + skip) != kEtherTypeIpv4 || in.data[l2 + 9] != kIpProtoTcp) {
    drops_.add(DropReason::kVxlanGso);
    return;
  }
  const uint8_t* ip = in.data + l2;
  uint32_t ihl = uint32_t{ip[0] & 0x0fu} * 4;
  uint32_t doff = ihl >= 20 && in.len >= l2 + ihl + 20 ? uint32_t{ip[ihl + 12]} >> 4 << 2 : 0;
  uint32_t hdrs = ihl + doff;
  uint32_t mss = in.vnet.gso_size;
  if (doff < 20 || in.len < l2 + hdrs || mss == 0) {
    drops_.add(DropReason::kVxlanGso);
    return;
  }
  if (hdrs + mss > s.mtu || kEthHeaderLen + hdrs + mss > kScratchFrame) {
    drops_.add(DropReason::kMtuExceeded);
    return;
  }
  uint16_t sport = source_port(in.data, in.len);
  uint32_t payload = in.len - l2 - hdrs;
  uint32_t seq = load_be32(ip + ihl + 4);
  uint16_t id = load_be16(ip + 4);
  uint8_t flags = ip[ihl + 13];
  for (uint32_t off = 0, i = 0; off < payload; off += mss, ++i) {
    uint32_t chunk = std::min(mss, payload - off);
    uint8_t* out = scratch_slot(q, vteps.size());
    std::memcpy(out, in.data, 12);
    store_be16(out + 12, kEtherTypeIpv4);
    uint8_t* oip = out + kEthHeaderLen;
    std::memcpy(oip, ip, hdrs);
    std::memcpy(oip + hdrs, ip + hdrs + off, chunk);
    store_be16(oip + 2, static_cast<uint16_t>(hdrs + chunk));
    store_be16(oip + 4, static_cast<uint16_t>(id + i));
    store_be16(oip + 10, 0);
    store_be16(oip + 10, checksum(oip, ihl));
    uint8_t* tcp = oip + ihl;
    store_be32(tcp + 4, seq + off);
    bool last = off + chunk >= payload;
    uint8_t f = flags;
    if (!last) f &= static_cast<uint8_t>(~(kFin | kPsh));
    if (i > 0) f &= static_cast<uint8_t>(~kCwr);
    tcp[13] = f;
    uint32_t l4_len = doff + chunk;
    store_be16(tcp + 16, 0);
    store_be16(tcp + 16, checksum_finish(
                             checksum_add(tcp, l4_len, ipv4_pseudo_sum(oip, kIpProtoTcp, l4_len))));
    RxFrame segment{out, static_cast<uint32_t>(kEthHeaderLen + hdrs + chunk), VnetHdr{}, 0};
    for (uint32_t vtep : vteps) queue(q, s, vtep, segment, TagOp::kKeep, sport);
  }
}

void VxlanPort::queue(TxQueue& q, const Segment& s, uint32_t vtep, const RxFrame& frame, TagOp tag,
                      uint16_t sport) {
  if (q.count == kTxQueue) flush();
  Tx& t = q.tx[q.count];
  // Frames leave the overlay untagged: kPop takes a tag off, nothing is ever pushed.
  t.frame.build(frame, tag == TagOp::kPop ? TagOp::kPop : TagOp::kKeep, 0);
  uint8_t* h = t.header;
  store_be16(h, sport);
  store_be16(h + 2, udp_port_);
  store_be16(h + 4, static_cast<uint16_t>(sizeof(t.header) + t.frame.len));
  store_be16(h + 6, 0);  // no UDP checksum (RFC 7348 section 5, IPv4)
  h[8] = kVxlanFlagVni;
  h[9] = h[10] = h[11] = 0;
  store_be32(h + 12, s.vni << 8);
  t.frame.iov[0] = {t.header, sizeof(t.header)};
  t.to = sockaddr_in{};
  t.to.sin_family = AF_INET;
  t.to.sin_addr.s_addr = htonl(vtep);
  msghdr& m = q.msgs[q.count].msg_hdr;
  m = msghdr{};
  m.msg_name = &t.to;
  m.msg_namelen = sizeof(t.to);
  m.msg_iov = t.frame.iov;
  m.msg_iovlen = static_cast<size_t>(t.frame.iovcnt);
  ++q.count;
}

uint64_t VxlanPort::flush() {
  TxQueue& q = tx_.mine();
  uint64_t failed = 0;
  size_t sent = 0;
  while (sent < q.count) {
    int n = ::sendmmsg(tx_sock_.get(), q.msgs + sent, static_cast<unsigned>(q.count - sent),
                       MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    spdlog::debug("VXLAN send: {}", std::strerror(errno));
    ++failed;
    ++sent;
  }
  q.count = 0;
  q.scratch_used = 0;
  return failed;
}

}  // namespace vireo::net
