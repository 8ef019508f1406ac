#include "registry/server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <thread>

#include "base/log.h"
#include "registry/connection.h"
#include "registry/stream.h"

namespace vireo::registry {

Result<std::unique_ptr<Server>> Server::create(Registry& registry, const ServerOptions& options) {
  std::unique_ptr<Server> s(new Server(registry, options));
  s->stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->stop_fd_) return errno_error("eventfd");
  if (!options.tls_cert.empty()) TRY(s->setup_tls());
  TRY(s->listen());
  return s;
}

Server::~Server() {
  stop();
  std::map<uint64_t, std::thread> threads;
  {
    std::unique_lock lock(mu_);
    idle_.wait(lock, [&] { return connections_.empty(); });
    threads.swap(threads_);
  }
  for (auto& [id, t] : threads) t.join();
  if (ssl_ctx_) SSL_CTX_free(ssl_ctx_);
}

void Server::reap_locked() {
  for (uint64_t id : finished_) {
    auto it = threads_.find(id);
    if (it == threads_.end()) continue;
    it->second.join();  // the thread is past its last use of the server
    threads_.erase(it);
  }
  finished_.clear();
}

Result<void> Server::setup_tls() {
  ssl_ctx_ = SSL_CTX_new(TLS_server_method());
  if (!ssl_ctx_) return make_error(ErrorCode::kInternal, "SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ssl_ctx_, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ssl_ctx_, options_.tls_cert.c_str()) != 1)
    return make_error(ErrorCode::kInvalidArgument, "cannot load TLS certificate {}",
                      options_.tls_cert);
  if (SSL_CTX_use_PrivateKey_file(ssl_ctx_, options_.tls_key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ssl_ctx_) != 1)
    return make_error(ErrorCode::kInvalidArgument, "cannot load TLS key {}", options_.tls_key);
  return {};
}

Result<void> Server::listen() {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(options_.port);
  const char* host = options_.host.empty() ? nullptr : options_.host.c_str();
  if (int rc = ::getaddrinfo(host, port.c_str(), &hints, &res); rc != 0)
    return make_error(ErrorCode::kInvalidArgument, "resolve {}: {}", options_.host,
                      gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  Fd fd(::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return errno_error("socket");
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), res->ai_addr, res->ai_addrlen) != 0)
    return errno_error(fmt::format("bind {}:{}", options_.host, options_.port));
  if (::listen(fd.get(), 512) != 0) return errno_error("listen");
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                         : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  listen_fd_ = std::move(fd);
  return {};
}

void Server::stop() {
  stopping_ = true;
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(stop_fd_.get(), &one, sizeof one);
  std::lock_guard lock(mu_);
  for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);
}

void Server::run() {
  while (!stopping_) {
    pollfd p[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0 && errno != EINTR) break;
    if (p[1].revents) break;
    if (!(p[0].revents & POLLIN)) continue;
    int c = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    std::lock_guard lock(mu_);
    reap_locked();
    if (connections_.size() >= options_.max_connections || stopping_) {
      ::close(c);
      continue;
    }
    connections_.insert(c);
    uint64_t id = next_id_++;
    threads_.emplace(id, std::thread([this, c, id] { serve(c, id); }));
  }
}

void Server::serve(int fd, uint64_t id) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  {
    SSL* ssl = ssl_ctx_ ? SSL_new(ssl_ctx_) : nullptr;
    Stream stream(Fd(fd), ssl, options_.idle_timeout);
    if (stream.handshake()) {
      Connection conn(registry_, stream, options_.auth.get());
      conn.run();
    }
    std::lock_guard lock(mu_);
    connections_.erase(fd);
    finished_.push_back(id);
    if (connections_.empty()) idle_.notify_all();
  }  // the fd closes here, after leaving the set: a stop() never shuts down a reused number
}

}  // namespace vireo::registry
