#include "network/port.h"

#include "network/wire.h"

namespace vireo::net {
namespace {

// Moves the virtio header's offsets by delta bytes (a tag was inserted or removed).
void shift_vnet(VnetHdr& vnet, int delta) {
  if (vnet.flags & kVnetNeedsCsum) vnet.csum_start = static_cast<uint16_t>(vnet.csum_start + delta);
  if (vnet.gso_type != kVnetGsoNone) vnet.hdr_len = static_cast<uint16_t>(vnet.hdr_len + delta);
}

}  // namespace

void TxFrame::build(const RxFrame& frame, TagOp op, uint16_t vlan) {
  vnet = frame.vnet;
  iov[0] = {&vnet, sizeof(vnet)};
  uint8_t* d = frame.data;
  // Without a tag to pop, or with a frame too short to hold one, the switch never asks for it.
  if (op == TagOp::kKeep || frame.len < kEthHeaderLen + kVlanTagLen) {
    iov[1] = {d, frame.len};
    iovcnt = 2;
    len = frame.len;
    return;
  }
  iov[1] = {d, 12};
  if (op == TagOp::kPop) {
    iov[2] = {d + 16, frame.len - 16};
    iovcnt = 3;
    len = frame.len - 4;
    shift_vnet(vnet, -4);
    return;
  }
  store_be16(tag, kEtherTypeVlan);
  store_be16(tag + 2, vlan & 0x0fff);
  iov[2] = {tag, 4};
  uint32_t rest = op == TagOp::kPush ? 12 : 16;
  if (op == TagOp::kRetag) tag[2] |= d[14] & 0xe0;  // keep the priority bits
  iov[3] = {d + rest, frame.len - rest};
  iovcnt = 4;
  len = frame.len + 16 - rest;
  if (op == TagOp::kPush) shift_vnet(vnet, 4);
}

}  // namespace vireo::net
