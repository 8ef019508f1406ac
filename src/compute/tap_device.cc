#include "compute/tap_device.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "base/fd.h"

namespace vireo::compute {

namespace {

Result<Fd> open_tap(const std::string& name, ifreq& ifr) {
  if (name.empty() || name.size() >= IFNAMSIZ)
    return make_error(ErrorCode::kInvalidArgument, "TAP name '{}' must be 1-15 characters", name);
  Fd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!fd) return errno_error("open /dev/net/tun");
  std::memset(&ifr, 0, sizeof ifr);
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) return errno_error("create TAP " + name);
  return fd;
}

}  // namespace

Result<void> create_tap(const std::string& name) {
  ifreq ifr;
  Fd tap = TRY(open_tap(name, ifr));
  if (::ioctl(tap.get(), TUNSETPERSIST, 1) < 0)
    return errno_error("make TAP " + name + " persistent");
  Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) return errno_error("socket");
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &ifr) < 0) return errno_error("flags of " + name);
  ifr.ifr_flags |= IFF_UP;
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &ifr) < 0) return errno_error("set " + name + " up");
  return {};
}

void delete_tap(const std::string& name) {
  ifreq ifr;
  auto tap = open_tap(name, ifr);
  if (tap) (void)::ioctl(tap->get(), TUNSETPERSIST, 0);
}

}  // namespace vireo::compute
