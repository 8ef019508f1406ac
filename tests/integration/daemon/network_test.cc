// Networks through vireod and the CLI: the default network, a network made with `vireo net`
// whose ports are the host ends of veth pairs into two namespaces that ping each other, through
// a kill -9 of vireod (vireo-netd keeps forwarding), a restart that adopts vireo-netd and a
// kill -9 of vireo-netd (started again with its saved state); and input the daemon must refuse
// with one-line errors.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <thread>

#include "base/json.h"
#include "cli_expect.h"
#include "daemon_process.h"
#include "netd_fixture.h"

namespace vireo::testing {
namespace {

Json find_network(const DaemonProcess& d, const std::string& name) {
  for (const auto& n : cli_json(d, {"net", "ls"}))
    if (n.value("name", "") == name) return n;
  return Json();
}

bool has_port(const DaemonProcess& d, const std::string& net, const std::string& iface) {
  Json ports = cli_json(d, {"net", "show", net}).value("ports", Json::array());
  return std::find(ports.begin(), ports.end(), Json(iface)) != ports.end();
}

TEST(DaemonNetworkTest, DefaultNetworkExists) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  Json n = find_network(d, "vireo0");
  ASSERT_TRUE(n.is_object());
  EXPECT_EQ(n.value("subnet", ""), "10.99.0.0/24");
  EXPECT_EQ(n.value("gateway", ""), "10.99.0.1");
  EXPECT_TRUE(n.value("dhcp", false));
  // Deleted once, it stays deleted across restarts.
  ASSERT_EQ(d.cli({"net", "rm", "vireo0"}).exit_code, 0);
  ASSERT_EQ(d.stop(), 0);
  ASSERT_TRUE(d.start());
  EXPECT_TRUE(find_network(d, "vireo0").is_null());
}

TEST(DaemonNetworkTest, NamespacesPingThroughNetworkThatOutlivesVireod) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  net::testing::Lab lab;
  const std::string net_name = lab.prefix() + "net";
  std::string ns_a = lab.add_namespace("a");
  std::string ns_b = lab.add_namespace("b");
  std::string host_a = lab.add_host(ns_a, "10.77.0.2/24", "ha");
  std::string host_b = lab.add_host(ns_b, "10.77.0.3/24", "hb");

  auto r = d.cli({"net", "create", net_name, "--subnet", "10.77.0.0/24", "--gateway", "10.77.0.1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = d.cli({"net", "port", "add", net_name, "--iface", host_a});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = d.cli({"net", "port", "add", net_name, "--iface", host_b});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has_port(d, net_name, host_a));
  EXPECT_EQ(cli_json(d, {"net", "port", "ls", net_name}).size(), 2u);
  EXPECT_TRUE(lab.ping_until(ns_a, "10.77.0.3"));
  EXPECT_TRUE(lab.ping_until(ns_b, "10.77.0.1"));  // the gateway answers
  EXPECT_FALSE(cli_json(d, {"net", "fdb", net_name}).empty());

  const pid_t netd = d.netd_pid();
  ASSERT_GT(netd, 0);
  d.kill();
  EXPECT_EQ(::kill(netd, 0), 0) << "vireo-netd died with vireod";
  EXPECT_TRUE(lab.ping_until(ns_b, "10.77.0.2"));

  ASSERT_TRUE(d.start());
  EXPECT_EQ(d.netd_pid(), netd) << "the restarted vireod did not adopt vireo-netd";
  EXPECT_EQ(find_network(d, net_name).value("subnet", ""), "10.77.0.0/24");
  EXPECT_TRUE(has_port(d, net_name, host_b));
  EXPECT_TRUE(lab.ping_until(ns_a, "10.77.0.3"));

  // vireo-netd killed under vireod: the next request starts it again with the saved state.
  ASSERT_EQ(::kill(netd, SIGKILL), 0);
  for (int i = 0; i < 500 && ::kill(netd, 0) == 0; ++i)  // init reaps it; no event to wait on
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(has_port(d, net_name, host_a));
  EXPECT_NE(d.netd_pid(), netd);
  EXPECT_TRUE(lab.ping_until(ns_b, "10.77.0.2"));

  expect_refused(d, {"net", "rm", net_name}, "has port");
  EXPECT_EQ(d.cli({"net", "port", "rm", net_name, "--iface", host_a}).exit_code, 0);
  EXPECT_EQ(d.cli({"net", "port", "rm", net_name, "--iface", host_b}).exit_code, 0);
  EXPECT_EQ(d.cli({"net", "rm", net_name}).exit_code, 0);
  EXPECT_TRUE(find_network(d, net_name).is_null());
}

TEST(DaemonNetworkTest, BadInputIsRefusedWithOneLineErrors) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  expect_refused(d, {"net", "create", "x1", "--subnet", "10.10.0/24"}, "subnet");
  expect_refused(d, {"net", "create", "x2", "--subnet", "10.10.0.0/33"}, "subnet");
  ASSERT_EQ(d.cli({"net", "create", "x3", "--subnet", "10.12.0.0/24"}).exit_code, 0);
  expect_refused(d, {"net", "create", "x3", "--subnet", "10.13.0.0/24"}, "exists");
  expect_refused(d, {"net", "show", "nosuchnet"}, "not found");
  expect_refused(d, {"net", "port", "add", "nosuchnet", "--iface", "lo"}, "not found");
  expect_refused(d, {"net", "port", "add", "x3", "--iface", "vtnosuch0"}, "vtnosuch0");
  expect_refused(d, {"net", "rm", "nosuchnet"}, "not found");
  expect_refused(d, {"net", "forward", "add", "x3", "8080", "10.99.0.5:80"}, "");
  expect_refused(d, {"fw", "rule", "add", "x3", "--protocol", "gre"}, "protocol");
}

}  // namespace
}  // namespace vireo::testing

namespace vireo::testing {
namespace {

// vireo app run --net NET: the app's eth0 is a veth whose host end is a port of the network; it
// gets its address from the network's DHCP server and reaches the gateway. Nothing is left after.
TEST(DaemonNetworkTest, SandboxedAppJoinsAVireoNetwork) {
  DaemonProcess d;
  ASSERT_TRUE(d.start());
  std::string apps = (d.root() / "apps").string();
  auto r =
      run_process({bin_dir() + "/vireo", "--socket", d.socket(), "app", "run", "--name", "netapp",
                   "--net", "vireo0", "--", "/bin/sh", "-c",
                   "ip -4 -o addr show dev eth0 | grep -o '10\\.99\\.0\\.[0-9]*/24'; "
                   "ping -c1 -W5 10.99.0.1 >/dev/null && echo gateway-reached"},
                  {.timeout = std::chrono::seconds(90), .extra_env = {"VIREO_APPS_DIR=" + apps}});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->exit_code, 0) << r->err;
  EXPECT_NE(r->out.find("10.99.0."), std::string::npos) << r->out << r->err;
  EXPECT_NE(r->out.find("gateway-reached"), std::string::npos) << r->out << r->err;
  // The veth and the port are gone again.
  Json ports = cli_json(d, {"net", "show", "vireo0"}).value("ports", Json::array());
  for (const auto& p : ports) EXPECT_FALSE(p.get<std::string>().starts_with("vsb")) << ports;
  auto unknown =
      run_process({bin_dir() + "/vireo", "--socket", d.socket(), "app", "run", "--net", "nowhere",
                   "--", "/bin/true"},
                  {.timeout = std::chrono::seconds(30), .extra_env = {"VIREO_APPS_DIR=" + apps}});
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->exit_code, 1);
  EXPECT_NE(unknown->err.find("--net nowhere"), std::string::npos) << unknown->err;
}

}  // namespace
}  // namespace vireo::testing
