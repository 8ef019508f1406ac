#include "compute/unix_socket.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

namespace vireo::compute {

Result<Fd> connect_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return make_error(ErrorCode::kInvalidArgument, "socket path too long ({} bytes): {}",
                      path.size(), path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return errno_error(fmt::format("connect {}", path));
  return fd;
}

}  // namespace vireo::compute
