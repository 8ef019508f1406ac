#include "storage/storaged_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

namespace vireo::storage {
namespace {

ErrorCode code_from_string(const std::string& s) {
  for (int c = 0; c <= int(ErrorCode::kInternal); ++c)
    if (to_string(ErrorCode(c)) == s) return ErrorCode(c);
  return ErrorCode::kInternal;
}

}  // namespace

Result<StoragedClient> StoragedClient::connect(const std::filesystem::path& socket) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket.native().size() >= sizeof addr.sun_path)
    return make_error(ErrorCode::kInvalidArgument, "socket path {} is too long", socket.string());
  std::memcpy(addr.sun_path, socket.c_str(), socket.native().size());
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    Error e = Error::from_errno(errno, "connect to vireo-storaged at " + socket.string());
    return std::unexpected(Error(ErrorCode::kUnavailable, e.message(), e.sys_errno()));
  }
  return StoragedClient(std::move(fd));
}

Result<Json> StoragedClient::call(const Json& request) {
  std::string line = dump_json(request) + "\n";
  for (size_t done = 0; done < line.size();) {
    ssize_t n = ::send(fd_.get(), line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("vireo-storaged: send");
    done += size_t(n);
  }
  size_t nl;
  while ((nl = buffered_.find('\n')) == std::string::npos) {
    char buf[65536];
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("vireo-storaged: recv");
    if (n == 0)
      return make_error(ErrorCode::kUnavailable, "vireo-storaged closed the control connection");
    buffered_.append(buf, size_t(n));
  }
  std::string reply = buffered_.substr(0, nl);
  buffered_.erase(0, nl + 1);
  Json j = TRY(parse_json(reply));
  if (!j.is_object())
    return make_error(ErrorCode::kInternal, "vireo-storaged: reply is not an object");
  if (!j.value("ok", false))
    return make_error(code_from_string(j.value("code", "")), j.value("error", "unknown error"));
  return j;
}

Result<Json> StoragedClient::create_pool(const std::string& name, const std::string& type,
                                         const std::string& path, uint64_t size) {
  Json r = {{"op", "pool.create"}, {"name", name}, {"type", type}, {"path", path}};
  if (size) r["size"] = size;
  return call(r);
}

Result<Json> StoragedClient::create_volume(const std::string& pool, const std::string& name,
                                           uint64_t size, const std::string& format) {
  return call(
      {{"op", "vol.create"}, {"pool", pool}, {"name", name}, {"size", size}, {"format", format}});
}

Result<Json> StoragedClient::show_volume(const std::string& pool, const std::string& name) {
  return call({{"op", "vol.show"}, {"pool", pool}, {"name", name}});
}

Result<void> StoragedClient::remove_volume(const std::string& pool, const std::string& name) {
  TRY(call({{"op", "vol.rm"}, {"pool", pool}, {"name", name}}));
  return {};
}

Result<Json> StoragedClient::snapshot_volume(const std::string& pool, const std::string& name,
                                             const std::string& snapshot) {
  return call({{"op", "vol.snapshot"}, {"pool", pool}, {"name", name}, {"snapshot", snapshot}});
}

Result<Json> StoragedClient::check_pool(const std::string& name) {
  return call({{"op", "pool.check"}, {"name", name}});
}

}  // namespace vireo::storage
