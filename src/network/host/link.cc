#include "network/host/link.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <memory>
#include <optional>
#include <thread>

#include "base/fd.h"

namespace vireo::net::host {
namespace {

// Runs f on a thread of its own and returns its result: namespace switches made by f end with
// the thread and never touch the caller's.
template <typename F>
auto on_own_thread(F&& f) -> decltype(f()) {
  std::optional<decltype(f())> result;
  std::thread([&] { result.emplace(f()); }).join();
  return std::move(*result);
}

Result<void> check_name(const std::string& name) {
  bool bad = name.empty() || name.size() >= IFNAMSIZ || name == "." || name == ".." ||
             std::ranges::any_of(name, [](unsigned char c) { return c == '/' || std::isspace(c); });
  if (bad) return make_error(ErrorCode::kInvalidArgument, "invalid interface name '{}'", name);
  return {};
}

std::string ipv4(uint32_t address) {
  return fmt::format("{}.{}.{}.{}", address >> 24, (address >> 16) & 0xff, (address >> 8) & 0xff,
                     address & 0xff);
}

// One rtnetlink request being built; every request asks for an acknowledgement.
class Request {
 public:
  Request(uint16_t type, uint16_t flags) {
    nlh_ = mnl_nlmsg_put_header(buf_.data());
    nlh_->nlmsg_type = type;
    nlh_->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
  }
  template <typename T>
  T* put_header() {
    return static_cast<T*>(mnl_nlmsg_put_extra_header(nlh_, sizeof(T)));
  }
  nlmsghdr* nlh() { return nlh_; }

 private:
  alignas(nlmsghdr) std::array<char, 4096> buf_{};
  nlmsghdr* nlh_;
};

// An rtnetlink socket of the namespace it was opened in, usable from any thread.
class Netlink {
 public:
  static Result<Netlink> open() {
    std::unique_ptr<mnl_socket, Closer> sock(mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC));
    if (!sock) return errno_error("open rtnetlink socket");
    if (mnl_socket_bind(sock.get(), 0, MNL_SOCKET_AUTOPID) < 0)
      return errno_error("bind rtnetlink socket");
    return Netlink(std::move(sock));
  }

  // Sends the request and waits for its acknowledgement; a failure reads "what: strerror".
  Result<void> request(Request& req, std::string_view what) {
    nlmsghdr* nlh = req.nlh();
    nlh->nlmsg_seq = ++seq_;
    if (mnl_socket_sendto(sock_.get(), nlh, nlh->nlmsg_len) < 0) return errno_error(what);
    std::array<char, 8192> buf;
    int ret = MNL_CB_OK;
    while (ret > MNL_CB_STOP) {
      ssize_t n = mnl_socket_recvfrom(sock_.get(), buf.data(), buf.size());
      if (n < 0) return errno_error(what);
      ret = mnl_cb_run(buf.data(), n, seq_, mnl_socket_get_portid(sock_.get()), nullptr, nullptr);
    }
    if (ret < 0) return errno_error(what);
    return {};
  }

 private:
  struct Closer {
    void operator()(mnl_socket* s) const { mnl_socket_close(s); }
  };
  explicit Netlink(std::unique_ptr<mnl_socket, Closer> sock) : sock_(std::move(sock)) {}

  std::unique_ptr<mnl_socket, Closer> sock_;
  uint32_t seq_ = 0;
};

Result<void> set_up(Netlink& nl, const std::string& name, std::string_view what) {
  Request req(RTM_NEWLINK, 0);
  auto* ifm = req.put_header<ifinfomsg>();
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_flags = IFF_UP;
  ifm->ifi_change = IFF_UP;
  mnl_attr_put_strz(req.nlh(), IFLA_IFNAME, name.c_str());
  return nl.request(req, what);
}

Result<void> add_pair(Netlink& nl, const std::string& host_name, int netns_fd,
                      const std::filesystem::path& netns, const InterfaceConfig& cfg) {
  Request req(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  nlmsghdr* nlh = req.nlh();
  req.put_header<ifinfomsg>()->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, host_name.c_str());
  mnl_attr_put_u32(nlh, IFLA_MTU, cfg.mtu);
  nlattr* linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
  nlattr* data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
  nlattr* peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
  req.put_header<ifinfomsg>()->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, cfg.name.c_str());
  if (std::ranges::any_of(cfg.mac, [](uint8_t b) { return b != 0; }))
    mnl_attr_put(nlh, IFLA_ADDRESS, sizeof(cfg.mac), cfg.mac);
  mnl_attr_put_u32(nlh, IFLA_MTU, cfg.mtu);
  mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, netns_fd);
  mnl_attr_nest_end(nlh, peer);
  mnl_attr_nest_end(nlh, data);
  mnl_attr_nest_end(nlh, linkinfo);
  return nl.request(
      req, fmt::format("create the pair with {} in namespace {}", cfg.name, netns.string()));
}

Result<void> add_address(Netlink& nl, unsigned index, const InterfaceConfig& cfg,
                         std::string_view where) {
  Request req(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  auto* ifa = req.put_header<ifaddrmsg>();
  ifa->ifa_family = AF_INET;
  ifa->ifa_prefixlen = cfg.prefix;
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = index;
  mnl_attr_put_u32(req.nlh(), IFA_LOCAL, htonl(cfg.address));
  mnl_attr_put_u32(req.nlh(), IFA_ADDRESS, htonl(cfg.address));
  if (cfg.prefix < 31) {
    uint32_t host_mask = cfg.prefix == 0 ? ~0u : ~0u >> cfg.prefix;
    mnl_attr_put_u32(req.nlh(), IFA_BROADCAST, htonl(cfg.address | host_mask));
  }
  return nl.request(req, fmt::format("add address {}/{} {}", ipv4(cfg.address), cfg.prefix, where));
}

Result<void> add_default_route(Netlink& nl, unsigned index, uint32_t gateway,
                               std::string_view where) {
  Request req(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
  auto* rtm = req.put_header<rtmsg>();
  rtm->rtm_family = AF_INET;
  rtm->rtm_table = RT_TABLE_MAIN;
  rtm->rtm_protocol = RTPROT_BOOT;
  rtm->rtm_scope = RT_SCOPE_UNIVERSE;
  rtm->rtm_type = RTN_UNICAST;
  mnl_attr_put_u32(req.nlh(), RTA_GATEWAY, htonl(gateway));
  mnl_attr_put_u32(req.nlh(), RTA_OIF, index);
  return nl.request(req, fmt::format("add default route via {} {}", ipv4(gateway), where));
}

// Configures the peer from inside the namespace; runs on a thread that joined it.
Result<void> configure_peer(const InterfaceConfig& cfg, std::string_view where) {
  Netlink nl = TRY_CTX(Netlink::open(), "{}", where);
  TRY(set_up(nl, "lo", fmt::format("set lo up {}", where)));
  TRY(set_up(nl, cfg.name, fmt::format("set {} up {}", cfg.name, where)));
  unsigned index = if_nametoindex(cfg.name.c_str());
  if (index == 0) return errno_error(fmt::format("find {} {}", cfg.name, where));
  TRY(add_address(nl, index, cfg, where));
  if (cfg.gateway != 0) TRY(add_default_route(nl, index, cfg.gateway, where));
  return {};
}

Result<void> configure_pair(Netlink& nl, const std::string& host_name, const Fd& ns,
                            const std::filesystem::path& netns, const InterfaceConfig& cfg) {
  TRY(set_up(nl, host_name, "set the host end up"));
  return on_own_thread([&]() -> Result<void> {
    if (::setns(ns.get(), CLONE_NEWNET) < 0)
      return errno_error("enter network namespace " + netns.string());
    return configure_peer(cfg, "in namespace " + netns.string());
  });
}

Result<void> delete_link_with(Netlink& nl, const std::string& name) {
  Request req(RTM_DELLINK, 0);
  req.put_header<ifinfomsg>()->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(req.nlh(), IFLA_IFNAME, name.c_str());
  auto r = nl.request(req, fmt::format("delete link {}", name));
  if (!r && r.error().sys_errno() == ENODEV) return {};
  return r;
}

Result<void> check_config(const InterfaceConfig& cfg) {
  TRY(check_name(cfg.name));
  if (cfg.prefix < 0 || cfg.prefix > 32)
    return make_error(ErrorCode::kInvalidArgument, "invalid prefix length {}", cfg.prefix);
  if (cfg.mtu < 68 || cfg.mtu > 65535)
    return make_error(ErrorCode::kInvalidArgument, "invalid MTU {}", cfg.mtu);
  return {};
}

}  // namespace

Result<void> create_netns(const std::filesystem::path& path) {
  return on_own_thread([&]() -> Result<void> {
    if (::unshare(CLONE_NEWNET) < 0) return errno_error("unshare the network namespace");
    Fd file(::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
    bool created = file.valid();
    if (!created && errno != EEXIST) return errno_error("create " + path.string());
    if (!created && netns_alive(path))
      return make_error(ErrorCode::kAlreadyExists, "network namespace {} already exists",
                        path.string());
    file.reset();
    if (::mount("/proc/thread-self/ns/net", path.c_str(), nullptr, MS_BIND, nullptr) < 0) {
      auto err = errno_error("pin the network namespace at " + path.string());
      if (created) ::unlink(path.c_str());
      return err;
    }
    return {};
  });
}

bool netns_alive(const std::filesystem::path& path) {
  struct statfs st;
  return ::statfs(path.c_str(), &st) == 0 && st.f_type == NSFS_MAGIC;
}

Result<void> remove_netns(const std::filesystem::path& path) {
  if (::umount2(path.c_str(), MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
    return errno_error("unmount network namespace " + path.string());
  if (::unlink(path.c_str()) < 0 && errno != ENOENT)
    return errno_error("remove network namespace file " + path.string());
  return {};
}

Result<void> create_veth(const std::string& host_name, const std::filesystem::path& netns,
                         const InterfaceConfig& cfg) {
  const std::string ctx = "veth " + host_name;
  TRY_CTX(check_name(host_name), "{}", ctx);
  TRY_CTX(check_config(cfg), "{}", ctx);
  if (link_exists(host_name))
    return make_error(ErrorCode::kAlreadyExists, "{}: link {} already exists", ctx, host_name);
  if (!netns_alive(netns))
    return make_error(ErrorCode::kNotFound, "{}: no network namespace at {}", ctx, netns.string());
  Fd ns(::open(netns.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns) return errno_error(fmt::format("{}: open {}", ctx, netns.string()));
  Netlink nl = TRY_CTX(Netlink::open(), "{}", ctx);
  TRY_CTX(add_pair(nl, host_name, ns.get(), netns, cfg), "{}", ctx);
  auto r = configure_pair(nl, host_name, ns, netns, cfg);
  if (!r) {
    (void)delete_link_with(nl, host_name);
    r.error().add_context(ctx);
  }
  return r;
}

Result<void> delete_link(const std::string& name) {
  TRY(check_name(name));
  Netlink nl = TRY(Netlink::open());
  return delete_link_with(nl, name);
}

bool link_exists(const std::string& name) {
  return if_nametoindex(name.c_str()) != 0;
}

}  // namespace vireo::net::host
