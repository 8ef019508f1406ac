// vireo-netd's DNS responder from a namespace: busybox nslookup resolves a DHCP client's host
// name, a registered name and a named reservation on the network's gateway; unknown names get
// NXDOMAIN; hostile queries are dropped and counted; registered names survive a restart.
#include <gtest/gtest.h>

#include <thread>

#include "netd_fixture.h"

namespace vireo::net::testing {
namespace {

// Sends hostile DNS queries to the gateway: a compression pointer loop, a label running past
// the end, a response instead of a query.
constexpr const char* kHostile = R"(
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
header = bytes.fromhex("123401000001000000000000")
for q in (header + b"\xc0\x0c\x00\x01\x00\x01",
          header + b"\x3fabc",
          bytes.fromhex("123481800001000000000000") + b"\x03web\x00\x00\x01\x00\x01"):
    s.sendto(q, ("10.189.0.1", 53))
)";

class NetdDnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    client_ = lab_.add_namespace("dc");
    querier_ = lab_.add_namespace("dq");
    std::string hc = lab_.add_host(client_, "", "hdc");
    std::string hq = lab_.add_host(querier_, "10.189.0.50/24", "hdq");
    netd_.call({{"op", "network.create"},
                {"name", "dns1"},
                {"subnet", "10.189.0.0/24"},
                {"gateway", "10.189.0.1"},
                {"dhcp", true}});
    netd_.call({{"op", "port.attach"}, {"network", "dns1"}, {"iface", hc}});
    netd_.call({{"op", "port.attach"}, {"network", "dns1"}, {"iface", hq}});
  }
  ProcessResult lookup(const std::string& name) {
    return lab_.in(querier_, {"busybox", "nslookup", name, "10.189.0.1"}, 15000);
  }

  Lab lab_;
  Netd netd_{lab_.dir()};
  std::string client_, querier_;
};

TEST_F(NetdDnsTest, ResolvesDhcpHostnamesRegisteredNamesAndReservations) {
  ProcessResult lease =
      lab_.in(client_, {"busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1",
                        "-x", "hostname:web1", "-s", "/bin/true"});
  ASSERT_TRUE(lease.ok()) << lease.out << lease.err;
  netd_.call({{"op", "dns.register"}, {"network", "dns1"}, {"name", "db"}, {"ip", "10.189.0.60"}});
  netd_.call({{"op", "dhcp.reserve"},
              {"network", "dns1"},
              {"mac", "02:00:00:00:07:07"},
              {"ip", "10.189.0.70"},
              {"name", "Cache"}});

  ProcessResult web = lookup("web1");
  EXPECT_TRUE(web.ok()) << web.out << web.err;
  EXPECT_NE(web.out.find("10.189.0.2"), std::string::npos) << web.out;
  ProcessResult db = lookup("db.dns1");  // NAME.NETWORK works too
  EXPECT_NE(db.out.find("10.189.0.60"), std::string::npos) << db.out << db.err;
  ProcessResult cache = lookup("CACHE");
  EXPECT_NE(cache.out.find("10.189.0.70"), std::string::npos) << cache.out << cache.err;
  ProcessResult none = lookup("nosuch");
  EXPECT_FALSE(none.ok());
  EXPECT_NE((none.out + none.err).find("NXDOMAIN"), std::string::npos) << none.out << none.err;

  Json names = netd_.call({{"op", "dns.list"}, {"network", "dns1"}})["names"];
  EXPECT_EQ(names.size(), 3u) << names.dump();
}

TEST_F(NetdDnsTest, HostileQueriesAreCountedAndRegisteredNamesPersist) {
  netd_.call({{"op", "dns.register"}, {"network", "dns1"}, {"name", "db"}, {"ip", "10.189.0.60"}});
  for (Json bad :
       {Json{{"name", "a.b"}, {"ip", "10.189.0.61"}}, Json{{"name", "db"}, {"ip", "10.99.0.1"}},
        Json{{"name", std::string(64, 'x')}, {"ip", "10.189.0.61"}}}) {
    bad["op"] = "dns.register";
    bad["network"] = "dns1";
    EXPECT_FALSE(netd_.call(bad, false)["ok"].get<bool>()) << bad.dump();
  }
  ASSERT_TRUE(lab_.ping_until(querier_, "10.189.0.1"));
  ASSERT_TRUE(lab_.in(querier_, {"python3", "-c", kHostile}).ok());
  Json drops;
  for (auto end = Clock::now() + std::chrono::seconds(5); Clock::now() < end;) {
    drops = netd_.call({{"op", "stats"}})["drops"];
    if (drops.value("dns_bad_format", 0) + drops.value("dns_truncated", 0) >= 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling the counters
  }
  EXPECT_EQ(drops.value("dns_bad_format", 0) + drops.value("dns_truncated", 0), 3) << drops.dump();

  netd_.stop();
  netd_.start();
  ProcessResult db;
  for (auto end = Clock::now() + std::chrono::seconds(10); Clock::now() < end;) {
    db = lookup("db");
    if (db.ok()) break;
  }
  EXPECT_NE(db.out.find("10.189.0.60"), std::string::npos) << db.out << db.err;
}

}  // namespace
}  // namespace vireo::net::testing
