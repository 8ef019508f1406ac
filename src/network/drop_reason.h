#pragma once
// Why the datapath dropped a packet. Every drop is counted under one of these, so bad input is
// visible in the statistics instead of silently lost. Free of <expected> (see parser.h).
#include <array>
#include <cstddef>
#include <cstdint>

namespace vireo::net {

enum class DropReason : uint8_t {
  kNone = 0,
  kEthTruncated,
  kVlanTruncated,
  kVlanStacked,
  kArpTruncated,
  kArpBadFormat,
  kIpv4Truncated,
  kIpv4BadVersion,
  kIpv4BadHeaderLength,
  kIpv4BadTotalLength,
  kIpv4BadChecksum,
  kIpv4BadFragment,
  kIcmpTruncated,
  kUdpTruncated,
  kUdpBadLength,
  kTcpTruncated,
  kTcpBadHeaderLength,
  kVxlanTruncated,
  kVxlanBadFlags,
  kVxlanUnknownVni,
  kDhcpTruncated,
  kDhcpBadFormat,
  kDhcpBadOptions,
  kDnsTruncated,
  kDnsBadFormat,
  // Decisions of the switch and router rather than malformed input.
  kVlanNotAllowed,
  kMtuExceeded,
  kNoPort,
  kHairpin,
  kTtlExceeded,
  kNoRoute,
  kFirewallDenied,
  kTxFailed,
  kNatUnsupported,  // a packet NAT cannot translate (not TCP, UDP or ICMP echo; a fragment)
  kNatExhausted,    // no free NAT port, or the connection table is full
  kVxlanNoSegment,  // a frame for a network without VXLAN reached the overlay port
  kVxlanGso,        // a GSO frame towards VXLAN (no software segmentation)
  kCount,
};

const char* drop_reason_name(DropReason reason);

// Counters indexed by reason. Owned by one datapath thread; readers on the same thread.
struct DropCounters {
  std::array<uint64_t, static_cast<size_t>(DropReason::kCount)> counts{};
  void add(DropReason reason, uint64_t n = 1) { counts[static_cast<size_t>(reason)] += n; }
  uint64_t operator[](DropReason reason) const { return counts[static_cast<size_t>(reason)]; }
  uint64_t total() const {
    uint64_t sum = 0;
    for (size_t i = 1; i < counts.size(); ++i) sum += counts[i];
    return sum;
  }
};

}  // namespace vireo::net
