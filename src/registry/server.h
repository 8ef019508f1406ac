#pragma once
// Server: the registry's HTTP/1.1 front. Accepts TCP connections (optionally TLS) and serves
// each on its own thread with Boost.Beast's parser over a Stream; request bodies are streamed
// to the handlers, blobs are sent with sendfile. run() blocks until stop(), which may be called
// from any thread (or a signal handler) and closes every connection.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "registry/auth.h"
#include "registry/registry.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace vireo::registry {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0 picks a free port
  std::string tls_cert;
  std::string tls_key;
  // Who may do what (auth.h); null: no authentication.
  std::shared_ptr<const Authenticator> auth;
  std::chrono::milliseconds idle_timeout{120000};
  size_t max_connections = 1024;
};

class Server {
 public:
  static Result<std::unique_ptr<Server>> create(Registry& registry, const ServerOptions& options);
  ~Server();

  uint16_t port() const { return port_; }
  bool tls() const { return ssl_ctx_ != nullptr; }
  void run();
  void stop();

 private:
  Server(Registry& registry, const ServerOptions& options)
      : registry_(registry), options_(options) {}
  Result<void> listen();
  Result<void> setup_tls();
  void serve(int fd, uint64_t id);
  // Joins the connection threads that are done (with mu_ held).
  void reap_locked();

  Registry& registry_;
  ServerOptions options_;
  Fd listen_fd_;
  Fd stop_fd_;  // eventfd
  uint16_t port_ = 0;
  SSL_CTX* ssl_ctx_ = nullptr;
  std::mutex mu_;
  std::condition_variable idle_;
  std::set<int> connections_;
  // Connection threads are joined, not detached, so that none outlives the server (with its
  // thread-local state, such as OpenSSL's).
  std::map<uint64_t, std::thread> threads_;
  std::vector<uint64_t> finished_;
  uint64_t next_id_ = 0;
  std::atomic<bool> stopping_{false};
};

}  // namespace vireo::registry
