// DNS: the query parser against hostile messages, and the responder's answers.
#include "network/dns_message.h"

#include <gtest/gtest.h>

#include "network/dns_responder.h"
#include "network/test_frames.h"

namespace vireo::net {
namespace {

using namespace testing;

Bytes query(const Bytes& name, uint16_t qtype = kDnsTypeA, uint16_t flags = 0x0100) {
  Bytes b;
  append16(b, 0x1234);
  append16(b, flags);
  append16(b, 1);
  append16(b, 0);
  append32(b, 0);
  b.insert(b.end(), name.begin(), name.end());
  append16(b, qtype);
  append16(b, kDnsClassIn);
  return b;
}

Bytes labels(std::initializer_list<std::string> parts) {
  Bytes b;
  for (const std::string& p : parts) {
    b.push_back(uint8_t(p.size()));
    b.insert(b.end(), p.begin(), p.end());
  }
  b.push_back(0);
  return b;
}

TEST(DnsParserTest, ParsesNameLowerCase) {
  Bytes q = query(labels({"Web", "LAN"}));
  DnsQuery out;
  ASSERT_EQ(parse_dns_query(q.data(), uint32_t(q.size()), out), DropReason::kNone);
  EXPECT_STREQ(out.name, "web.lan");
  EXPECT_EQ(out.qtype, kDnsTypeA);
  EXPECT_EQ(out.id, 0x1234);
}

TEST(DnsParserTest, EveryTruncationIsRejected) {
  Bytes q = query(labels({"web", "lan"}));
  DnsQuery out;
  for (size_t len = 0; len < q.size(); ++len)
    EXPECT_NE(parse_dns_query(q.data(), uint32_t(len), out), DropReason::kNone) << len;
}

TEST(DnsParserTest, HostileNamesAreRejected) {
  DnsQuery out;
  // A pointer to itself, a forward pointer, a reserved label type, a too long name, a response,
  // two questions.
  for (Bytes bad : {query(Bytes{0xc0, 12}), query(Bytes{0xc0, 40, 0}), query(Bytes{0x40, 0}),
                    query(labels({"a", "b"}), kDnsTypeA, 0x8100), query(labels({"we b"}))}) {
    EXPECT_NE(parse_dns_query(bad.data(), uint32_t(bad.size()), out), DropReason::kNone);
  }
  Bytes long_name;
  for (int i = 0; i < 5; ++i) {
    long_name.push_back(63);
    long_name.insert(long_name.end(), 63, 'a');
  }
  long_name.push_back(0);
  Bytes q = query(long_name);
  EXPECT_EQ(parse_dns_query(q.data(), uint32_t(q.size()), out), DropReason::kDnsBadFormat);
  Bytes two = query(labels({"a"}));
  two[5] = 2;
  EXPECT_EQ(parse_dns_query(two.data(), uint32_t(two.size()), out), DropReason::kDnsBadFormat);
}

TEST(DnsParserTest, PointerLoopIsBounded) {
  // "web", then a pointer back to the start of the name: it points backwards every time, so
  // only the bound on pointers stops it.
  Bytes q = query(Bytes{3, 'w', 'e', 'b', 0xc0, 12});
  DnsQuery out;
  EXPECT_EQ(parse_dns_query(q.data(), uint32_t(q.size()), out), DropReason::kDnsBadFormat);
}

TEST(DnsResponderTest, AnswersKnownNamesAndNxdomain) {
  DhcpServer dhcp;
  dhcp.enable(4096, Cidr{ip4(10, 1, 0, 0), 24}, ip4(10, 1, 0, 1));
  ASSERT_TRUE(dhcp.reserve(4096, 0x020000000009, ip4(10, 1, 0, 9), "cache"));
  DnsResponder dns(&dhcp);
  dns.enable(4096, "lan");
  ASSERT_TRUE(dns.add(4096, "web", ip4(10, 1, 0, 5)));
  EXPECT_FALSE(dns.add(4096, "bad name", ip4(10, 1, 0, 5)));
  EXPECT_EQ(dns.lookup(4096, "web"), ip4(10, 1, 0, 5));
  EXPECT_EQ(dns.lookup(4096, "web.lan"), ip4(10, 1, 0, 5));
  EXPECT_EQ(dns.lookup(4096, "cache"), ip4(10, 1, 0, 9));
  EXPECT_EQ(dns.lookup(4096, "nope"), 0u);

  auto ask = [&](const Bytes& name, uint16_t qtype, Bytes& reply) {
    Bytes f = concat(
        ethernet(mac(1), mac(5), kEtherTypeIpv4),
        ipv4(ip4(10, 1, 0, 5), ip4(10, 1, 0, 1), kIpProtoUdp, udp(40000, 53, query(name, qtype))));
    ParsedFrame p;
    EXPECT_EQ(parse_frame(f.data(), uint32_t(f.size()), p), DropReason::kNone);
    reply.assign(DnsResponder::kReplySize, 0);
    DropReason drop;
    uint32_t n = dns.handle(4096, 0x0276'0a010001, f.data(), p, reply.data(), drop);
    reply.resize(n);
    ParsedFrame r;
    EXPECT_EQ(parse_frame(reply.data(), n, r), DropReason::kNone);
    EXPECT_EQ(r.dst_port, 40000);
    return r;
  };
  Bytes reply;
  ParsedFrame r = ask(labels({"web"}), kDnsTypeA, reply);
  const uint8_t* d = reply.data() + r.payload;
  EXPECT_EQ(load_be16(d + 2) & 0xf, 0);  // NOERROR
  EXPECT_EQ(load_be16(d + 6), 1);        // one answer
  EXPECT_EQ(load_be32(d + r.payload_len - 4), ip4(10, 1, 0, 5));
  r = ask(labels({"nope"}), kDnsTypeA, reply);
  EXPECT_EQ(load_be16(reply.data() + r.payload + 2) & 0xf, 3);  // NXDOMAIN
  r = ask(labels({"web"}), 28, reply);                          // AAAA: no data, no error
  EXPECT_EQ(load_be16(reply.data() + r.payload + 2) & 0xf, 0);
  EXPECT_EQ(load_be16(reply.data() + r.payload + 6), 0);
}

}  // namespace
}  // namespace vireo::net
