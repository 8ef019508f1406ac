#include "storage/nbd/server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>

#include "base/log.h"

namespace vireo::storage::nbd {

void serve_connection(NbdServer& server, int socket, const TlsContext* tls);  // connection.cc

Result<std::unique_ptr<NbdServer>> NbdServer::create(std::vector<ExportConfig> exports) {
  for (size_t i = 0; i < exports.size(); ++i) {
    if (!exports[i].device)
      return make_error(ErrorCode::kInvalidArgument, "nbd: export {} has no device",
                        exports[i].name);
    for (size_t j = 0; j < i; ++j)
      if (exports[i].name == exports[j].name)
        return make_error(ErrorCode::kAlreadyExists, "nbd: export {} given twice", exports[i].name);
  }
  std::unique_ptr<NbdServer> s(new NbdServer());
  for (auto& e : exports) s->exports_.push_back(std::make_shared<const ExportConfig>(std::move(e)));
  s->stop_event_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->stop_event_) return errno_error("nbd: eventfd");
  return s;
}

NbdServer::~NbdServer() {
  stop();
  reap(true);
  for (const auto& p : unix_paths_) ::unlink(p.c_str());
}

std::shared_ptr<const ExportConfig> NbdServer::find_export(std::string_view name) const {
  std::lock_guard lock(exports_mu_);
  // The empty name is the default export, as with qemu-nbd.
  if (name.empty()) return exports_.empty() ? nullptr : exports_.front();
  for (const auto& e : exports_)
    if (e->name == name) return e;
  return nullptr;
}

Result<void> NbdServer::add_export(ExportConfig config) {
  if (!config.device)
    return make_error(ErrorCode::kInvalidArgument, "nbd: export {} has no device", config.name);
  std::lock_guard lock(exports_mu_);
  for (const auto& e : exports_)
    if (e->name == config.name)
      return make_error(ErrorCode::kAlreadyExists, "nbd: export {} exists", config.name);
  exports_.push_back(std::make_shared<const ExportConfig>(std::move(config)));
  return {};
}

Result<void> NbdServer::replace_export(ExportConfig config) {
  if (!config.device)
    return make_error(ErrorCode::kInvalidArgument, "nbd: export {} has no device", config.name);
  std::lock_guard lock(exports_mu_);
  for (auto& e : exports_) {
    if (e->name != config.name) continue;
    e = std::make_shared<const ExportConfig>(std::move(config));
    return {};
  }
  return make_error(ErrorCode::kNotFound, "nbd: no export {}", config.name);
}

bool NbdServer::remove_export(std::string_view name) {
  std::lock_guard lock(exports_mu_);
  for (auto it = exports_.begin(); it != exports_.end(); ++it) {
    if ((*it)->name != name) continue;
    exports_.erase(it);
    return true;
  }
  return false;
}

std::vector<std::string> NbdServer::export_names() const {
  std::lock_guard lock(exports_mu_);
  std::vector<std::string> names;
  for (const auto& e : exports_) names.push_back(e->name);
  return names;
}

Result<std::pair<std::string, uint16_t>> parse_host_port(std::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos)
    return make_error(ErrorCode::kInvalidArgument, "{} is not HOST:PORT", text);
  std::string host(text.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  std::string_view digits = text.substr(colon + 1);
  unsigned port = 0;
  if (digits.empty() || digits.size() > 5) port = 65536;
  for (char c : digits) port = c >= '0' && c <= '9' ? port * 10 + unsigned(c - '0') : 65536;
  if (port > 65535) return make_error(ErrorCode::kInvalidArgument, "bad port in {}", text);
  return std::pair{host, uint16_t(port)};
}

namespace {

Result<std::shared_ptr<const TlsContext>> load_tls(const TlsConfig& tls) {
  if (!tls.enabled()) return nullptr;
  return TlsContext::create(tls);
}

}  // namespace

Result<void> NbdServer::listen_unix(const std::filesystem::path& path, const TlsConfig& tls) {
  std::string where = "nbd: listen on " + path.string();
  auto context = TRY_CTX(load_tls(tls), "{}", where);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof addr.sun_path)
    return make_error(ErrorCode::kInvalidArgument, "{}: path too long", where);
  std::strcpy(addr.sun_path, path.c_str());
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return make_error(ErrorCode::kAlreadyExists, "{}: exists and is not a socket", where);
    ::unlink(path.c_str());
  }
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error(where);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return errno_error(where);
  ::chmod(path.c_str(), 0660);
  if (::listen(fd.get(), 128) != 0) return errno_error(where);
  listeners_.push_back({std::move(fd), std::move(context)});
  unix_paths_.push_back(path);
  return {};
}

Result<std::string> NbdServer::listen_tcp(const std::string& host, uint16_t port,
                                          const TlsConfig& tls) {
  std::string where = fmt::format("nbd: listen on {}:{}", host, port);
  auto context = TRY_CTX(load_tls(tls), "{}", where);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res))
    return make_error(ErrorCode::kInvalidArgument, "{}: {}", where, gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  Fd fd(::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error(where);
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), res->ai_addr, res->ai_addrlen) != 0) return errno_error(where);
  if (::listen(fd.get(), 128) != 0) return errno_error(where);
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len);
  char text[INET6_ADDRSTRLEN] = {};
  uint16_t bound_port = 0;
  if (bound.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&bound);
    ::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
    bound_port = ntohs(a->sin6_port);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&bound);
    ::inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
    bound_port = ntohs(a->sin_port);
  }
  listeners_.push_back({std::move(fd), std::move(context)});
  if (bound.ss_family == AF_INET6) return fmt::format("[{}]:{}", text, bound_port);
  return fmt::format("{}:{}", text, bound_port);
}

void NbdServer::stop() {
  stopping_ = true;
  uint64_t one = 1;
  (void)!::write(stop_event_.get(), &one, sizeof one);
  std::lock_guard lock(mu_);
  for (auto& c : connections_)
    if (!c.done) ::shutdown(c.fd, SHUT_RDWR);
}

void NbdServer::reap(bool all) {
  std::list<Connection> finished;
  {
    std::lock_guard lock(mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      auto next = std::next(it);
      if (all || it->done) finished.splice(finished.end(), connections_, it);
      it = next;
    }
  }
  for (auto& c : finished) c.thread.join();
}

void NbdServer::serve(Fd socket) {
  ++active_;
  serve_connection(*this, socket.get(), nullptr);
  --active_;
}

Result<void> NbdServer::run() {
  if (listeners_.empty()) return make_error(ErrorCode::kInvalidArgument, "nbd: no listeners");
  std::vector<pollfd> fds;
  for (const auto& l : listeners_) fds.push_back({l.fd.get(), POLLIN, 0});
  fds.push_back({stop_event_.get(), POLLIN, 0});
  while (!stopping_) {
    if (::poll(fds.data(), fds.size(), 1000) < 0 && errno != EINTR) return errno_error("nbd: poll");
    reap(false);
    for (size_t i = 0; i + 1 < fds.size() && !stopping_; ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      Fd client(::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC));
      if (!client) {
        spdlog::warn("nbd: accept: {}", std::strerror(errno));
        continue;
      }
      int one = 1;
      ::setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard lock(mu_);
      Connection& c = connections_.emplace_back();
      c.fd = client.get();
      c.thread = std::thread([this, &c, fd = std::move(client), tls = listeners_[i].tls]() mutable {
        ++active_;
        serve_connection(*this, fd.get(), tls.get());
        --active_;
        {
          // Marked done before the close so that stop() never shuts down a reused number.
          std::lock_guard done_lock(mu_);
          c.done = true;
        }
        fd.reset();
      });
    }
  }
  {
    std::lock_guard lock(mu_);
    for (auto& c : connections_)
      if (!c.done) ::shutdown(c.fd, SHUT_RDWR);
  }
  reap(true);
  return {};
}

}  // namespace vireo::storage::nbd
