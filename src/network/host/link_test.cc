// Needs root: makes real network namespaces, veth pairs and a bridge, and checks them with
// iproute2 (`nsenter --net=<file> ip -j ...`).
#include "network/host/link.h"

#include <arpa/inet.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace vireo::net::host {
namespace {

namespace fs = std::filesystem;

struct Output {
  int status = -1;
  std::string text;
};

// Runs a shell command (stderr included in the output); commands here are bounded (ping -W).
Output run(const std::string& cmd) {
  Output out;
  FILE* f = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.text.append(buf, n);
  int st = ::pclose(f);
  out.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

uint32_t addr(const char* s) {
  in_addr a{};
  ::inet_pton(AF_INET, s, &a);
  return ntohl(a.s_addr);
}

InterfaceConfig config(const char* address, uint8_t last_mac_byte) {
  InterfaceConfig cfg;
  cfg.mac[0] = 0x02;
  cfg.mac[1] = 0x42;
  cfg.mac[5] = last_mac_byte;
  cfg.address = addr(address);
  cfg.prefix = 24;
  cfg.gateway = addr("10.99.0.1");
  cfg.mtu = 1400;
  return cfg;
}

class LinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vireo-hostnet-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override {
    for (const auto& link : links_) EXPECT_TRUE(delete_link(link)) << link;
    for (const auto& bridge : bridges_) run("ip link del " + bridge);
    for (const auto& ns : netns_) EXPECT_TRUE(remove_netns(ns)) << ns;
    fs::remove_all(dir_);
  }

  // A host link name unique to this run, deleted in TearDown.
  std::string link_name(std::string_view tag) {
    links_.push_back(fmt::format("vhn{}{}", ::getpid(), tag));
    return links_.back();
  }
  // A path for a namespace file, removed in TearDown.
  fs::path netns_path(std::string_view tag) {
    netns_.push_back(dir_ / tag);
    return netns_.back();
  }
  fs::path make_netns(std::string_view tag) {
    fs::path path = netns_path(tag);
    auto r = create_netns(path);
    EXPECT_TRUE(r) << r.error().message();
    return path;
  }
  std::string make_bridge() {
    bridges_.push_back(fmt::format("vhn{}br", ::getpid()));
    Output out = run(fmt::format("ip link add {} type bridge forward_delay 0 && ip link set {} up",
                                 bridges_.back(), bridges_.back()));
    EXPECT_EQ(out.status, 0) << out.text;
    return bridges_.back();
  }

  // `ip -j <args>` inside the namespace at ns (or in the host's for an empty path).
  static nlohmann::json ip_json(const fs::path& ns, const std::string& args) {
    std::string prefix = ns.empty() ? "" : "nsenter --net=" + ns.string() + " ";
    Output out = run(prefix + "ip -j " + args);
    EXPECT_EQ(out.status, 0) << out.text;
    auto j = nlohmann::json::parse(out.text, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << out.text;
    return j;
  }
  static bool has_flag(const nlohmann::json& link, const char* flag) {
    for (const auto& f : link.value("flags", nlohmann::json::array()))
      if (f == flag) return true;
    return false;
  }
  static std::vector<nlohmann::json> ipv4_addresses(const nlohmann::json& link) {
    std::vector<nlohmann::json> out;
    for (const auto& a : link.value("addr_info", nlohmann::json::array()))
      if (a.value("family", "") == "inet") out.push_back(a);
    return out;
  }
  static bool ns_has_link(const fs::path& ns, const std::string& name) {
    return run("nsenter --net=" + ns.string() + " ip link show " + name).status == 0;
  }

  fs::path dir_;
  std::vector<std::string> links_;
  std::vector<std::string> bridges_;
  std::vector<fs::path> netns_;
};

TEST_F(LinkTest, CreateNetnsPinsNamespaceUntilRemoved) {
  fs::path ns = make_netns("ns");
  EXPECT_TRUE(netns_alive(ns));
  EXPECT_FALSE(netns_alive(dir_));

  auto again = create_netns(ns);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists) << again.error().message();

  ASSERT_TRUE(remove_netns(ns));
  EXPECT_FALSE(netns_alive(ns));
  EXPECT_FALSE(fs::exists(ns));
  EXPECT_TRUE(remove_netns(ns));
}

TEST_F(LinkTest, CreateNetnsReusesAFileThatIsNoLongerPinned) {
  fs::path ns = netns_path("stale");
  ASSERT_EQ(run("touch " + ns.string()).status, 0);
  EXPECT_FALSE(netns_alive(ns));
  auto r = create_netns(ns);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(netns_alive(ns));
}

TEST_F(LinkTest, CreateVethConfiguresPeerInNamespace) {
  fs::path ns = make_netns("ns");
  std::string host = link_name("h");
  InterfaceConfig cfg = config("10.99.0.5", 0x05);
  auto r = create_veth(host, ns, cfg);
  ASSERT_TRUE(r) << r.error().message();

  auto eth0 = ip_json(ns, "addr show eth0");
  ASSERT_EQ(eth0.size(), 1u);
  EXPECT_EQ(eth0[0]["address"], "02:42:00:00:00:05");
  EXPECT_EQ(eth0[0]["mtu"], 1400);
  EXPECT_TRUE(has_flag(eth0[0], "UP"));
  EXPECT_TRUE(has_flag(eth0[0], "LOWER_UP"));
  auto v4 = ipv4_addresses(eth0[0]);
  ASSERT_EQ(v4.size(), 1u) << eth0.dump();
  const auto& a = v4[0];
  EXPECT_EQ(a["local"], "10.99.0.5");
  EXPECT_EQ(a["prefixlen"], 24);
  EXPECT_EQ(a["broadcast"], "10.99.0.255");

  auto lo = ip_json(ns, "link show lo");
  ASSERT_EQ(lo.size(), 1u);
  EXPECT_TRUE(has_flag(lo[0], "UP"));

  auto routes = ip_json(ns, "route show default");
  ASSERT_EQ(routes.size(), 1u);
  EXPECT_EQ(routes[0]["gateway"], "10.99.0.1");
  EXPECT_EQ(routes[0]["dev"], "eth0");

  EXPECT_TRUE(link_exists(host));
  auto h = ip_json({}, "addr show " + host);
  ASSERT_EQ(h.size(), 1u);
  EXPECT_TRUE(has_flag(h[0], "UP"));
  EXPECT_EQ(h[0]["mtu"], 1400);
  EXPECT_TRUE(ipv4_addresses(h[0]).empty()) << h.dump();
}

TEST_F(LinkTest, NamespacesOnABridgeReachEachOther) {
  std::string bridge = make_bridge();
  fs::path ns_a = make_netns("a");
  fs::path ns_b = make_netns("b");
  std::string host_a = link_name("a");
  std::string host_b = link_name("b");
  auto ra = create_veth(host_a, ns_a, config("10.99.0.10", 0x10));
  ASSERT_TRUE(ra) << ra.error().message();
  auto rb = create_veth(host_b, ns_b, config("10.99.0.11", 0x11));
  ASSERT_TRUE(rb) << rb.error().message();
  for (const auto& h : {host_a, host_b}) {
    Output out = run(fmt::format("ip link set {} master {}", h, bridge));
    ASSERT_EQ(out.status, 0) << out.text;
  }

  Output ping = run("nsenter --net=" + ns_a.string() + " ping -c1 -W2 10.99.0.11");
  EXPECT_EQ(ping.status, 0) << ping.text;
}

TEST_F(LinkTest, DeleteLinkRemovesThePair) {
  fs::path ns = make_netns("ns");
  std::string host = link_name("h");
  ASSERT_TRUE(create_veth(host, ns, config("10.99.0.5", 0x05)));
  ASSERT_TRUE(ns_has_link(ns, "eth0"));

  auto r = delete_link(host);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_FALSE(link_exists(host));
  EXPECT_FALSE(ns_has_link(ns, "eth0"));
  EXPECT_TRUE(delete_link(host));
}

TEST_F(LinkTest, ExistingHostNameIsAlreadyExistsAndChangesNothing) {
  fs::path ns_a = make_netns("a");
  fs::path ns_b = make_netns("b");
  std::string host = link_name("h");
  ASSERT_TRUE(create_veth(host, ns_a, config("10.99.0.5", 0x05)));

  auto r = create_veth(host, ns_b, config("10.99.0.6", 0x06));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kAlreadyExists) << r.error().message();
  EXPECT_TRUE(link_exists(host));
  EXPECT_TRUE(ns_has_link(ns_a, "eth0"));
  EXPECT_FALSE(ns_has_link(ns_b, "eth0"));
}

TEST_F(LinkTest, InvalidNamesAreInvalidArgument) {
  fs::path ns = make_netns("ns");
  for (const std::string name : {"vhn-much-too-long", "", "a/b", "a b"}) {
    auto r = create_veth(name, ns, config("10.99.0.5", 0x05));
    ASSERT_FALSE(r) << name;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << r.error().message();
    EXPECT_FALSE(link_exists(name));
  }
  InterfaceConfig cfg = config("10.99.0.5", 0x05);
  cfg.name = "eth0-much-too-long";
  auto r = create_veth(link_name("h"), ns, cfg);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << r.error().message();
  EXPECT_FALSE(link_exists(links_.back()));
}

TEST_F(LinkTest, FailureMidwayLeavesNoHostLink) {
  fs::path ns = make_netns("ns");
  std::string host = link_name("h");
  InterfaceConfig cfg = config("10.99.0.5", 0x05);
  cfg.gateway = addr("192.0.2.1");  // outside 10.99.0.0/24: the route cannot be added

  auto r = create_veth(host, ns, cfg);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("veth " + host + ": add default route via 192.0.2.1"),
            std::string::npos)
      << r.error().message();
  EXPECT_FALSE(link_exists(host));
  EXPECT_FALSE(ns_has_link(ns, "eth0"));
}

TEST_F(LinkTest, MissingNamespaceIsNotFound) {
  std::string host = link_name("h");
  auto r = create_veth(host, dir_ / "none", config("10.99.0.5", 0x05));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound) << r.error().message();
  EXPECT_FALSE(link_exists(host));
}

}  // namespace
}  // namespace vireo::net::host
