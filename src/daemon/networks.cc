#include "daemon/networks.h"

#include "base/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <thread>

#include "api/event.h"
#include "base/fd.h"
#include "base/file.h"
#include "base/log.h"
#include "network/ipv4.h"

namespace vireo::daemon {

namespace {

namespace fs = std::filesystem;
using server::Method;
using server::Request;
using server::Response;

Result<Json> body_object(const Request& req) {
  Json body = TRY(req.json_body());
  if (!body.is_object())
    return make_error(ErrorCode::kInvalidArgument, "the body must be a JSON object");
  return body;
}

// A network spec from the API body: the netd fields, with a gateway (the subnet's first host)
// filled in when DHCP or NAT needs one.
Result<Json> network_request(const Json& body) {
  static const std::set<std::string> kKnown = {"name",   "subnet", "gateway", "dhcp", "nat",
                                               "uplink", "vlan",   "vxlan",   "mtu"};
  for (const auto& [key, value] : body.items())
    if (!kKnown.contains(key))
      return make_error(ErrorCode::kInvalidArgument,
                        "unknown field '{}' (a network has name, subnet, gateway, dhcp, nat, "
                        "uplink, vlan, vxlan, mtu)",
                        key);
  if (!body.contains("subnet") || !body["subnet"].is_string())
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'subnet' (a CIDR such as "
                      "10.10.0.0/24) is required");
  net::Cidr subnet = TRY_CTX(net::parse_cidr(body["subnet"].get<std::string>()), "field 'subnet'");
  Json out = body;
  const bool wants_gateway = body.value("dhcp", false) == true ||
                             body.value("nat", false) == true ||
                             body.value("uplink", false) == true;
  if (!body.contains("gateway") && wants_gateway && subnet.prefix <= 30)
    out["gateway"] = net::format_ipv4(subnet.addr + 1);
  return out;
}

bool port_in(const Json& port, const std::string& network) {
  if (port.value("network", "") == network) return true;
  if (port.contains("trunk") && port["trunk"].is_array())
    for (const auto& n : port["trunk"])
      if (n == network) return true;
  return false;
}

std::string port_name(const Json& port) {
  return port.contains("iface") ? port.value("iface", "") : port.value("tap", "");
}

}  // namespace

NetworkManager::NetworkManager(fs::path state_root, server::EventHub& events,
                               std::string vxlan_local)
    : root_(std::move(state_root)), events_(events), vxlan_local_(std::move(vxlan_local)) {}

void NetworkManager::start() {
  if (auto r = adopt_or_spawn(); !r) {
    spdlog::error("networks unavailable for now: vireo-netd: {}", r.error().message());
    return;
  }
  if (auto r = create_default(); !r)
    spdlog::error("default network {}: {}", kDefaultNetwork, r.error().message());
}

Result<void> NetworkManager::adopt_or_spawn() {
  TRY(make_dirs(dir(), 0700));
  const fs::path socket = dir() / "netd.sock";
  if (auto client = net::NetdClient::connect(socket, std::chrono::seconds(5)); client) {
    netd_ = std::move(*client);
    spdlog::info("adopted the running vireo-netd on {}", socket.string());
    return {};
  }
  Fd log(::open((dir() / "netd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log) return errno_error("open " + (dir() / "netd.log").string());
  const std::string binary = find_sibling_program("vireo-netd");
  if (binary.empty())
    return make_error(ErrorCode::kUnavailable,
                      "vireo-netd not found next to vireod or on PATH; networks are unavailable");
  std::vector<std::string> argv = {binary, "--control", socket.string(), "--state",
                                   (dir() / "state").string()};
  if (!vxlan_local_.empty()) argv.insert(argv.end(), {"--vxlan-local", vxlan_local_});
  pid_t pid = TRY(spawn_detached(argv, log.get()));
  TRY(write_file_atomic(dir() / "netd.pid", fmt::format("{}\n", pid), 0600));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid)
      return make_error(ErrorCode::kUnavailable, "{} exited at start (status {}); see {}", binary,
                        status, (dir() / "netd.log").string());
    if (auto client = net::NetdClient::connect(socket); client) {
      netd_ = std::move(*client);
      spdlog::info("started vireo-netd (pid {}) on {}", pid, socket.string());
      return {};
    }
    // netd has no readiness signal but its socket; poll it briefly.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGTERM);
  return make_error(ErrorCode::kTimeout, "{} did not answer on {} within 10 s", binary,
                    socket.string());
}

// Once per state root: a user who deletes vireo0 does not get it back at the next start.
Result<void> NetworkManager::create_default() {
  const fs::path marker = dir() / "default-network-created";
  if (fs::exists(marker)) return {};
  Json list = TRY(call("network.list"));
  if (list["networks"].empty()) {
    TRY(call("network.create", Json{{"name", kDefaultNetwork},
                                    {"subnet", "10.99.0.0/24"},
                                    {"gateway", "10.99.0.1"},
                                    {"dhcp", true}}));
    lifecycle(kDefaultNetwork, "created");
    spdlog::info("created the default network {} (10.99.0.0/24, DHCP)", kDefaultNetwork);
  }
  return write_file_atomic(marker, "", 0600);
}

// netd answers kUnavailable only when it cannot be reached: then it is gone (crashed, killed,
// never started) and is started again, once per request; its saved configuration brings the
// networks back.
Result<Json> NetworkManager::call(const std::string& op, Json fields) {
  std::lock_guard lock(mutex_);
  if (netd_) {
    auto reply = netd_->call(op, fields);
    if (reply || reply.error().code() != ErrorCode::kUnavailable) return reply;
    spdlog::warn("{}; starting vireo-netd again", reply.error().message());
    netd_.reset();
  }
  if (auto r = adopt_or_spawn(); !r)
    return make_error(ErrorCode::kUnavailable, "vireo-netd: {}", r.error().message());
  return netd_->call(op, std::move(fields));
}

Result<Json> NetworkManager::find(const std::string& name) {
  Json list = TRY(call("network.list"));
  for (const auto& n : list["networks"])
    if (n.value("name", "") == name) return n;
  return make_error(ErrorCode::kNotFound, "network {} not found", name);
}

Result<void> NetworkManager::require(const std::string& network) {
  TRY(find(network));
  return {};
}

Result<void> NetworkManager::attach_interface(const std::string& network,
                                              const std::string& iface) {
  TRY(call("port.attach", Json{{"network", network}, {"iface", iface}}));
  return {};
}

void NetworkManager::detach_interface(const std::string& iface) {
  (void)call("port.detach", Json{{"name", iface}});
}

Result<NetworkManager::AddressLease> NetworkManager::reserve_address(const std::string& network,
                                                                     const std::string& mac,
                                                                     const std::string& ip,
                                                                     const std::string& dns_name) {
  Json n = TRY(find(network));
  if (!n.value("dhcp", false))
    return make_error(ErrorCode::kConflict,
                      "network {} has no DHCP, which gives containers their addresses; use a "
                      "network created with --dhcp",
                      network);
  Json request{{"network", network}, {"mac", mac}};
  if (!ip.empty()) request["ip"] = ip;
  if (!dns_name.empty()) request["name"] = dns_name;
  Json reply = TRY(call("dhcp.reserve", request));
  net::Cidr subnet = TRY(net::parse_cidr(n.value("subnet", "")));
  return AddressLease{.ip = reply.value("ip", ip),
                      .prefix = subnet.prefix,
                      .gateway = n.value("gateway", ""),
                      .mtu = n.value("mtu", 1500)};
}

void NetworkManager::release_address(const std::string& network, const std::string& mac) {
  if (auto r = call("dhcp.unreserve", Json{{"network", network}, {"mac", mac}}); !r)
    spdlog::warn("network {}: release the address of {}: {}", network, mac, r.error().message());
}

Result<Json> NetworkManager::dynamic_lease(const std::string& network, const std::string& mac) {
  Json n = TRY(find(network));
  if (!n.value("dhcp", false)) return Json();
  Json leases = TRY(call("dhcp.leases", Json{{"network", network}})).value("leases", Json::array());
  for (const auto& l : leases)
    if (l.value("mac", "") == mac && !l.value("static", false)) {
      Json lease{{"ip", l.value("ip", "")}};
      if (l.contains("hostname")) lease["hostname"] = l["hostname"];
      return lease;
    }
  return Json();
}

Result<void> NetworkManager::adopt_lease(const std::string& network, const std::string& mac,
                                         const Json& lease) {
  if (!TRY(find(network)).value("dhcp", false)) return {};  // nothing here hands addresses out
  Json request{{"network", network}, {"mac", mac}, {"ip", lease.value("ip", "")}};
  if (lease.contains("hostname")) request["hostname"] = lease["hostname"];
  TRY_CTX(call("dhcp.lease.add", request), "keep address {} on network {}", lease.value("ip", ""),
          network);
  return {};
}

Result<void> NetworkManager::add_forward(const std::string& network, uint16_t host_port,
                                         const std::string& to, const std::string& protocol) {
  TRY(call(
      "forward.add",
      Json{{"network", network}, {"host_port", host_port}, {"to", to}, {"protocol", protocol}}));
  return {};
}

void NetworkManager::remove_forward(uint16_t host_port, const std::string& protocol) {
  if (auto r = call("forward.delete", Json{{"host_port", host_port}, {"protocol", protocol}});
      !r && r.error().code() != ErrorCode::kNotFound)
    spdlog::warn("remove the forward of port {}/{}: {}", host_port, protocol, r.error().message());
}

void NetworkManager::lifecycle(const std::string& name, const std::string& verb) {
  events_.publish("lifecycle", api::lifecycle_metadata("network-" + verb, "/1.0/networks/" + name));
}

void NetworkManager::add_routes(server::Router& router) {
  router.add_sync(Method::kGet, "/1.0/networks", [this](Request&) -> Result<Response> {
    return Response::json(TRY(call("network.list"))["networks"]);
  });
  router.add_sync(Method::kPost, "/1.0/networks", [this](Request& req) -> Result<Response> {
    Json spec = TRY(network_request(TRY(body_object(req))));
    Json reply = TRY(call("network.create", spec));
    const std::string name = reply["network"].value("name", "");
    lifecycle(name, "created");
    return std::move(
        Response::json(reply["network"], 201).header("Location", "/1.0/networks/" + name));
  });
  router.add_sync(Method::kGet, "/1.0/networks/{name}", [this](Request& req) -> Result<Response> {
    const std::string name = req.params["name"];
    Json n = TRY(find(name));
    Json ports = Json::array();
    const Json listed = TRY(call("port.list"))["ports"];
    for (const auto& p : listed)
      if (port_in(p, name)) ports.push_back(port_name(p));
    n["ports"] = ports;
    return Response::json(n);
  });
  // Only a VXLAN network's remotes change in place; anything else is delete and create.
  router.add_sync(Method::kPatch, "/1.0/networks/{name}", [this](Request& req) -> Result<Response> {
    const std::string name = req.params["name"];
    Json n = TRY(find(name));
    Json body = TRY(body_object(req));
    for (const auto& [key, value] : body.items())
      if (key != "vxlan" || !value.is_object() || value.size() != 1 || !value.contains("remotes") ||
          !value["remotes"].is_array())
        return make_error(ErrorCode::kInvalidArgument,
                          "only vxlan.remotes can be changed; delete and recreate network {} to "
                          "change '{}'",
                          name, key);
    if (!body.contains("vxlan")) return Response::json(n);
    if (!n.contains("vxlan"))
      return make_error(ErrorCode::kInvalidArgument, "network {} has no VXLAN", name);
    std::set<std::string> want, have;
    for (const auto& ip : body["vxlan"]["remotes"]) {
      if (!ip.is_string())
        return make_error(ErrorCode::kInvalidArgument, "vxlan.remotes holds IP addresses");
      want.insert(ip.get<std::string>());
    }
    for (const auto& ip : n["vxlan"]["remotes"]) have.insert(ip.get<std::string>());
    for (const auto& ip : want)
      if (!have.contains(ip)) TRY(call("vxlan.remote.add", Json{{"network", name}, {"ip", ip}}));
    for (const auto& ip : have)
      if (!want.contains(ip)) TRY(call("vxlan.remote.delete", Json{{"network", name}, {"ip", ip}}));
    lifecycle(name, "updated");
    return Response::json(TRY(find(name)));
  });
  router.add_sync(Method::kDelete, "/1.0/networks/{name}",
                  [this](Request& req) -> Result<Response> {
                    const std::string name = req.params["name"];
                    TRY(call("network.delete", Json{{"name", name}}));
                    lifecycle(name, "deleted");
                    return Response::json(Json::object());
                  });
  add_port_routes(router);
  add_service_routes(router);
}

void NetworkManager::add_port_routes(server::Router& router) {
  router.add_sync(Method::kGet, "/1.0/networks/{name}/ports",
                  [this](Request& req) -> Result<Response> {
                    const std::string name = req.params["name"];
                    TRY(find(name));
                    Json out = Json::array();
                    const Json listed = TRY(call("port.list"))["ports"];
                    for (const auto& p : listed)
                      if (port_in(p, name)) out.push_back(p);
                    return Response::json(out);
                  });
  router.add_sync(Method::kPost, "/1.0/networks/{name}/ports",
                  [this](Request& req) -> Result<Response> {
                    const std::string name = req.params["name"];
                    TRY(find(name));
                    Json body = TRY(body_object(req));
                    if (!body.contains("trunk")) body["network"] = name;
                    Json reply = TRY(call("port.attach", body));
                    return Response::json(reply["port"], 201);
                  });
  router.add_sync(Method::kDelete, "/1.0/networks/{name}/ports/{iface}",
                  [this](Request& req) -> Result<Response> {
                    const std::string name = req.params["name"];
                    const std::string iface = req.params["iface"];
                    TRY(find(name));
                    bool here = false;
                    const Json listed = TRY(call("port.list"))["ports"];
                    for (const auto& p : listed)
                      here = here || (port_in(p, name) && port_name(p) == iface);
                    if (!here)
                      return make_error(ErrorCode::kNotFound, "port {} is not on network {}", iface,
                                        name);
                    TRY(call("port.detach", Json{{"name", iface}}));
                    return Response::json(Json::object());
                  });
  router.add_sync(Method::kGet, "/1.0/networks/{name}/fdb",
                  [this](Request& req) -> Result<Response> {
                    const std::string name = req.params["name"];
                    TRY(find(name));
                    return Response::json(TRY(call("fdb.dump", Json{{"network", name}}))["fdb"]);
                  });
}

// Routes and connection tracking are host-wide in vireo-netd (one router for all networks):
// they are listed under every network; a route's "via" must be in a routed network.
void NetworkManager::add_service_routes(server::Router& router) {
  router.add_sync(Method::kGet, "/1.0/networks/{name}/routes",
                  [this](Request& req) -> Result<Response> {
                    TRY(find(req.params["name"]));
                    return Response::json(TRY(call("route.list"))["routes"]);
                  });
  router.add_sync(Method::kPost, "/1.0/networks/{name}/routes",
                  [this](Request& req) -> Result<Response> {
                    TRY(find(req.params["name"]));
                    Json body = TRY(body_object(req));
                    TRY(call("route.add", body));
                    return Response::json(body, 201);
                  });
  router.add_sync(
      Method::kDelete, "/1.0/networks/{name}/routes", [this](Request& req) -> Result<Response> {
        TRY(find(req.params["name"]));
        auto dst = req.query.find("destination");
        if (dst == req.query.end())
          return make_error(ErrorCode::kInvalidArgument, "give the route as ?destination=CIDR");
        TRY(call("route.delete", Json{{"destination", dst->second}}));
        return Response::json(Json::object());
      });
  router.add_sync(Method::kGet, "/1.0/networks/{name}/conntrack",
                  [this](Request& req) -> Result<Response> {
                    TRY(find(req.params["name"]));
                    return Response::json(TRY(call("conntrack.list"))["connections"]);
                  });
  router.add_sync(Method::kGet, "/1.0/networks/{name}/forwards",
                  [this](Request& req) -> Result<Response> {
                    const std::string name = req.params["name"];
                    TRY(find(name));
                    Json out = Json::array();
                    const Json listed = TRY(call("forward.list"))["forwards"];
                    for (const auto& f : listed)
                      if (f.value("network", "") == name) out.push_back(f);
                    return Response::json(out);
                  });
  router.add_sync(Method::kPost, "/1.0/networks/{name}/forwards",
                  [this](Request& req) -> Result<Response> {
                    const std::string name = req.params["name"];
                    TRY(find(name));
                    Json body = TRY(body_object(req));
                    Json request{{"network", name}};
                    if (body.contains("host_port")) request["host_port"] = body["host_port"];
                    if (body.contains("target")) request["to"] = body["target"];
                    if (body.contains("protocol")) request["protocol"] = body["protocol"];
                    TRY(call("forward.add", request));
                    return Response::json(request, 201);
                  });
  router.add_sync(Method::kDelete, "/1.0/networks/{name}/forwards/{host_port}",
                  [this](Request& req) -> Result<Response> {
                    const std::string name = req.params["name"];
                    TRY(find(name));
                    Json request{{"host_port", req.params["host_port"]}};
                    if (auto p = req.query.find("protocol"); p != req.query.end())
                      request["protocol"] = p->second;
                    TRY(call("forward.delete", request));
                    return Response::json(Json::object());
                  });
  router.add_sync(Method::kGet, "/1.0/networks/{name}/firewall/rules",
                  [this](Request& req) -> Result<Response> {
                    return Response::json(
                        TRY(call("firewall.rule.list", Json{{"network", req.params["name"]}})));
                  });
  router.add_sync(Method::kPost, "/1.0/networks/{name}/firewall/rules",
                  [this](Request& req) -> Result<Response> {
                    Json body = TRY(body_object(req));
                    body["network"] = req.params["name"];
                    return Response::json(TRY(call("firewall.rule.add", body)), 201);
                  });
  router.add_sync(
      Method::kDelete, "/1.0/networks/{name}/firewall/rules/{id}",
      [this](Request& req) -> Result<Response> {
        int64_t id = -1;
        try {
          id = std::stoll(req.params["id"]);
        } catch (...) {
        }
        if (id < 0) return make_error(ErrorCode::kInvalidArgument, "rule id must be a number");
        TRY(call("firewall.rule.delete", Json{{"network", req.params["name"]}, {"id", id}}));
        return Response::json(Json::object());
      });
}

}  // namespace vireo::daemon
