// The control API without devices: validation, network life cycle, persistence.
#include "network/controller.h"

#include <gtest/gtest.h>

#include "base/file.h"
#include "base/ids.h"

namespace vireo::net {
namespace {

class ControllerTest : public ::testing::Test {
 protected:
  void TearDown() override { std::filesystem::remove_all(dir_); }
  Json call(Controller& c, const std::string& line) { return *parse_json(c.handle_line(line)); }

  std::filesystem::path dir_ =
      std::filesystem::temp_directory_path() / ("vireo-netd-ctl-" + random_hex(4));
  Datapath dp_;
};

TEST_F(ControllerTest, RejectsMalformedRequests) {
  Controller c(dp_, {}, nullptr);
  for (const char* bad :
       {"not json", "[1]", R"({"op":1})", R"({"op":"network.create"})",
        R"({"op":"network.create","name":"a","subnet":"10.0.0.1/24"})",
        R"({"op":"network.create","name":"a","subnet":"10.0.0.0/33"})",
        R"({"op":"network.create","name":"a","subnet":"10.0.0.0/24","vlan":5000})",
        R"({"op":"network.create","name":"a","subnet":"10.0.0.0/24","gateway":"10.1.0.1"})",
        R"({"op":"network.create","name":"../x","subnet":"10.0.0.0/24"})",
        R"({"op":"port.attach","network":"a"})",
        R"({"op":"port.attach","network":"a","iface":"x","tap":"y"})", R"({"op":"fly"})"}) {
    Json r = call(c, bad);
    EXPECT_FALSE(r["ok"].get<bool>()) << bad;
    EXPECT_TRUE(r["error"].is_string()) << bad;
  }
}

TEST_F(ControllerTest, NetworksAreCreatedListedAndDeleted) {
  Controller c(dp_, {}, nullptr);
  EXPECT_TRUE(
      call(
          c,
          R"({"op":"network.create","name":"a","subnet":"10.0.0.0/24","gateway":"10.0.0.1","vlan":7})")
          ["ok"]
              .get<bool>());
  EXPECT_EQ(call(c, R"({"op":"network.create","name":"a","subnet":"10.5.0.0/24"})")["code"],
            "already exists");
  EXPECT_FALSE(
      call(c, R"({"op":"network.create","name":"b","subnet":"10.0.0.128/25"})")["ok"].get<bool>());
  EXPECT_FALSE(
      call(c, R"({"op":"network.create","name":"b","subnet":"10.9.0.0/24","vlan":7})")["ok"]
          .get<bool>());
  Json list = call(c, R"({"op":"network.list"})")["networks"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["gateway"], "10.0.0.1");
  EXPECT_TRUE(call(c, R"({"op":"network.delete","name":"a"})")["ok"].get<bool>());
  EXPECT_FALSE(call(c, R"({"op":"network.delete","name":"a"})")["ok"].get<bool>());
}

TEST_F(ControllerTest, AttachingMissingInterfaceFailsCleanly) {
  Controller c(dp_, {}, nullptr);
  call(c, R"({"op":"network.create","name":"a","subnet":"10.0.0.0/24"})");
  Json r = call(c, R"({"op":"port.attach","network":"a","iface":"vtnosuchdev0"})");
  EXPECT_FALSE(r["ok"].get<bool>());
  EXPECT_TRUE(call(c, R"({"op":"port.list"})")["ports"].empty());
}

TEST_F(ControllerTest, ConfigurationSurvivesRestart) {
  {
    Controller c(dp_, dir_, nullptr);
    call(c, R"({"op":"network.create","name":"a","subnet":"10.0.0.0/24","gateway":"10.0.0.1"})");
    call(c, R"({"op":"network.create","name":"b","subnet":"10.1.0.0/24","gateway":"10.1.0.1"})");
    EXPECT_TRUE(
        call(c, R"({"op":"route.add","destination":"192.168.0.0/16","via":"10.1.0.9"})")["ok"]
            .get<bool>());
  }
  Datapath fresh;
  Controller c(fresh, dir_, nullptr);
  ASSERT_TRUE(c.restore());
  EXPECT_EQ(call(c, R"({"op":"network.list"})")["networks"].size(), 2u);
  EXPECT_EQ(call(c, R"({"op":"route.list"})")["routes"].size(), 1u);
}

TEST_F(ControllerTest, NatDnsAndForwardRequestsAreValidatedInOneLine) {
  Controller c(dp_, {}, nullptr);
  for (
      const char* bad : {
          R"({"op":"network.create","name":"n","subnet":"10.0.0.0/24","nat":true})",
          R"({"op":"network.create","name":"n","subnet":"10.0.0.0/24","gateway":"10.0.0.1","nat":true,"uplink":true})",
          R"({"op":"network.create","name":"n","subnet":"10.0.0.0/24","nat":"yes","gateway":"10.0.0.1"})",
          R"({"op":"network.create","name":"n","subnet":"10.0.0.0/24","vxlan":5})",
          R"({"op":"network.create","name":"n","subnet":"10.0.0.0/24","vxlan":{"vni":0}})",
          R"({"op":"network.create","name":"n","subnet":"10.0.0.0/24","vxlan":{"vni":7,"remotes":"1.2.3.4"}})",
      }) {
    Json r = call(c, bad);
    EXPECT_FALSE(r["ok"].get<bool>()) << bad;
    EXPECT_EQ(r["error"].get<std::string>().find('\n'), std::string::npos) << bad;
  }
  ASSERT_TRUE(
      call(
          c,
          R"({"op":"network.create","name":"lan","subnet":"10.0.0.0/24","gateway":"10.0.0.1","nat":true})")
          ["ok"]
              .get<bool>());
  call(c, R"({"op":"network.create","name":"l2","subnet":"10.3.0.0/24"})");
  Json r = call(c, R"({"op":"forward.add","network":"lan","host_port":80,"to":"10.9.0.2:80"})");
  EXPECT_EQ(r["error"], "forward.add: 10.9.0.2 is not a host of network lan (10.0.0.0/24)");
  EXPECT_FALSE(
      call(c, R"({"op":"forward.add","network":"l2","host_port":80,"to":"10.3.0.2:80"})")["ok"]
          .get<bool>());  // no gateway to route through
  EXPECT_TRUE(
      call(c, R"({"op":"forward.add","network":"lan","host_port":80,"to":"10.0.0.2:80"})")["ok"]
          .get<bool>());
  EXPECT_FALSE(call(c, R"({"op":"forward.delete","host_port":81})")["ok"].get<bool>());
  EXPECT_FALSE(call(c, R"({"op":"dns.register","network":"l2","name":"a","ip":"10.3.0.2"})")["ok"]
                   .get<bool>());
  EXPECT_FALSE(
      call(c, R"({"op":"dns.register","network":"lan","name":"a b","ip":"10.0.0.2"})")["ok"]
          .get<bool>());
  EXPECT_TRUE(call(c, R"({"op":"dns.register","network":"lan","name":"web","ip":"10.0.0.2"})")["ok"]
                  .get<bool>());
  EXPECT_EQ(call(c, R"({"op":"dns.list","network":"lan"})")["names"].size(), 1u);
  EXPECT_FALSE(call(c, R"({"op":"vxlan.vteps","network":"lan"})")["ok"].get<bool>());
  // Deleting the network takes its forwards and names with it.
  EXPECT_TRUE(call(c, R"({"op":"network.delete","name":"lan"})")["ok"].get<bool>());
  EXPECT_TRUE(call(c, R"({"op":"forward.list"})")["forwards"].empty());
}

TEST_F(ControllerTest, ForwardsAndNamesSurviveRestart) {
  {
    Controller c(dp_, dir_, nullptr);
    call(
        c,
        R"({"op":"network.create","name":"lan","subnet":"10.0.0.0/24","gateway":"10.0.0.1","nat":true})");
    call(
        c,
        R"({"op":"forward.add","network":"lan","host_port":"8080","to":"10.0.0.2:80","protocol":"udp"})");
    call(c, R"({"op":"dns.register","network":"lan","name":"web","ip":"10.0.0.2"})");
    call(
        c,
        R"({"op":"network.create","name":"dyn","subnet":"10.4.0.0/24","gateway":"10.4.0.1","dhcp":true})");
    EXPECT_TRUE(
        call(
            c,
            R"({"op":"dhcp.reserve","network":"dyn","mac":"02:00:00:00:00:09","ip":"10.4.0.9","name":"cache"})")
            ["ok"]
                .get<bool>());
  }
  Datapath fresh;
  Controller c(fresh, dir_, nullptr);
  ASSERT_TRUE(c.restore());
  Json forwards = call(c, R"({"op":"forward.list"})")["forwards"];
  ASSERT_EQ(forwards.size(), 1u);
  EXPECT_EQ(forwards[0]["protocol"], "udp");
  EXPECT_EQ(call(c, R"({"op":"dns.list","network":"lan"})")["names"][0]["name"], "web");
  Json leases = call(c, R"({"op":"dhcp.leases","network":"dyn"})")["leases"];
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0]["hostname"], "cache");
  EXPECT_EQ(leases[0]["static"], true);
  EXPECT_EQ(call(c, R"({"op":"dns.list","network":"dyn"})")["names"][0]["name"], "cache");
  Json networks = call(c, R"({"op":"network.list"})")["networks"];
  for (const Json& n : networks)
    if (n["name"] == "lan") {
      EXPECT_EQ(n["nat"], true);
    }
}

TEST_F(ControllerTest, AdoptedLeasesAreValidatedAndSurviveRestart) {
  {
    Controller c(dp_, dir_, nullptr);
    call(
        c,
        R"({"op":"network.create","name":"mv","subnet":"10.6.0.0/24","gateway":"10.6.0.1","dhcp":true})");
    Json ok = call(
        c,
        R"({"op":"dhcp.lease.add","network":"mv","mac":"02:00:00:00:00:07","ip":"10.6.0.7","hostname":"vm1","seconds":600})");
    EXPECT_EQ(ok["ok"], true) << ok;
    for (
        const char* bad :
        {R"({"op":"dhcp.lease.add","network":"mv","mac":"02:00:00:00:00:08","ip":"10.6.0.7"})",
         R"({"op":"dhcp.lease.add","network":"mv","mac":"02:00:00:00:00:08","ip":"10.6.0.1"})",
         R"({"op":"dhcp.lease.add","network":"mv","mac":"02:00:00:00:00:08","ip":"10.9.0.2"})",
         R"({"op":"dhcp.lease.add","network":"mv","mac":"02:00:00:00:00:08","ip":"10.6.0.8","seconds":0})",
         R"({"op":"dhcp.lease.add","network":"mv","mac":"02:00:00:00:00:08","ip":"10.6.0.8","seconds":99999})",
         R"({"op":"dhcp.lease.add","network":"mv","mac":"02:00:00:00:00:08"})"})
      EXPECT_EQ(call(c, bad)["ok"], false) << bad;
  }
  Datapath fresh;
  Controller c(fresh, dir_, nullptr);
  ASSERT_TRUE(c.restore());
  Json leases = call(c, R"({"op":"dhcp.leases","network":"mv"})")["leases"];
  ASSERT_EQ(leases.size(), 1u) << leases;
  EXPECT_EQ(leases[0]["ip"], "10.6.0.7");
  EXPECT_EQ(leases[0]["static"], false);
  EXPECT_EQ(leases[0]["hostname"], "vm1");
}

TEST_F(ControllerTest, CorruptStateIsAnErrorNotACrash) {
  std::filesystem::create_directories(dir_);
  ASSERT_TRUE(
      write_file_atomic(dir_ / "netd.json", "{\"networks\": [{\"name\": 5}], \"ports\": 3}"));
  Controller c(dp_, dir_, nullptr);
  EXPECT_TRUE(c.restore());  // bad entries are logged and skipped
  ASSERT_TRUE(write_file_atomic(dir_ / "netd.json", "{oops"));
  Controller d(dp_, dir_, nullptr);
  EXPECT_FALSE(d.restore());
}

TEST_F(ControllerTest, ReservationsWithoutAddressPickAFreeOneAndCanBeDropped) {
  Controller c(dp_, dir_, nullptr);
  call(
      c,
      R"({"op":"network.create","name":"ct","subnet":"10.5.0.0/29","gateway":"10.5.0.1","dhcp":true})");
  Json a = call(c, R"({"op":"dhcp.reserve","network":"ct","mac":"02:00:00:00:00:01","name":"a"})");
  ASSERT_EQ(a["ok"], true) << a;
  EXPECT_EQ(a["ip"], "10.5.0.2");
  // The same MAC again keeps its address; another gets the next one.
  EXPECT_EQ(call(c, R"({"op":"dhcp.reserve","network":"ct","mac":"02:00:00:00:00:01"})")["ip"],
            "10.5.0.2");
  EXPECT_EQ(call(c, R"({"op":"dhcp.reserve","network":"ct","mac":"02:00:00:00:00:02"})")["ip"],
            "10.5.0.3");
  // A /29 has 6 hosts, the gateway is one: 10.5.0.4-.6 remain.
  for (int i = 3; i <= 5; ++i)
    EXPECT_EQ(
        call(c, fmt::format(R"({{"op":"dhcp.reserve","network":"ct","mac":"02:00:00:00:00:0{}"}})",
                            i))["ok"],
        true);
  Json full = call(c, R"({"op":"dhcp.reserve","network":"ct","mac":"02:00:00:00:00:09"})");
  EXPECT_EQ(full["ok"], false);
  EXPECT_NE(full["error"].get<std::string>().find("no free address"), std::string::npos) << full;
  EXPECT_EQ(call(c, R"({"op":"dhcp.unreserve","network":"ct","mac":"02:00:00:00:00:01"})")["ok"],
            true);
  EXPECT_EQ(call(c, R"({"op":"dhcp.reserve","network":"ct","mac":"02:00:00:00:00:09"})")["ip"],
            "10.5.0.2");
  EXPECT_EQ(call(c, R"({"op":"dhcp.reserve","network":"ct","mac":"zz"})")["ok"], false);
}

}  // namespace
}  // namespace vireo::net
