#include "daemon/daemon.h"

#include <fcntl.h>
#include <sys/file.h>

#include <condition_variable>

#include <spdlog/sinks/base_sink.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "api/error_body.h"
#include "base/fd.h"
#include "base/file.h"
#include "base/ids.h"
#include "base/log.h"
#include "daemon/containers.h"
#include "daemon/host_facts.h"
#include "daemon/images.h"
#include "daemon/networks.h"
#include "daemon/profiles.h"
#include "daemon/sandboxes.h"
#include "daemon/storage.h"
#include "daemon/vms.h"
#include "server/http_server.h"
#include "server/objects.h"
#include "server/operations.h"
#include "store/store.h"

#ifndef VIREO_VERSION
#define VIREO_VERSION "0.0.0"
#endif

namespace vireo::daemon {

namespace asio = boost::asio;

namespace {

// Forwards daemon log lines to /1.0/events as "log" events.
class EventLogSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit EventLogSink(server::EventHub& events) : events_(events) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    events_.publish("log", {{"level", spdlog::level::to_string_view(msg.level).data()},
                            {"message", std::string(msg.payload.data(), msg.payload.size())}});
  }
  void flush_() override {}

 private:
  server::EventHub& events_;
};

const std::vector<std::string> kApiExtensions = {
    "operations", "events_websocket",        "etag",
    "profiles",   "tls_client_certificates", "bearer_tokens",
    "vms",        "storage_pools",           "networks"};

Result<std::pair<std::string, uint16_t>> split_listen(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return make_error(ErrorCode::kInvalidArgument, "--listen '{}': expected HOST:PORT", listen);
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    port = -1;
  }
  if (port < 0 || port > 65535)
    return make_error(ErrorCode::kInvalidArgument, "--listen '{}': port must be 0-65535", listen);
  return std::pair{host, static_cast<uint16_t>(port)};
}

}  // namespace

std::filesystem::path database_path(const std::filesystem::path& root) {
  return root / "vireo.db";
}

struct Daemon::Impl {
  DaemonConfig config;
  Fd root_lock;
  std::unique_ptr<store::Store> store;
  asio::io_context io{1};
  server::EventHub events{io};
  server::OperationManager operations{io, events};
  // Before the router: the container routes and the VMs use them until they are destroyed.
  std::unique_ptr<NetworkManager> networks;
  std::unique_ptr<StorageManager> storage;
  server::Router router;
  server::ObjectService objects{*store, events, operations};
  std::unique_ptr<server::HttpServer> http;
  std::unique_ptr<VmManager> vms;
  std::shared_ptr<EventLogSink> log_sink;
  api::HostInfo host;
  uint16_t tls_port = 0;

  Impl(DaemonConfig c, Fd lock, std::unique_ptr<store::Store> s)
      : config(std::move(c)), root_lock(std::move(lock)), store(std::move(s)) {}
  ~Impl() {
    if (log_sink) {
      auto& sinks = spdlog::default_logger()->sinks();
      std::erase(sinks, std::static_pointer_cast<spdlog::sinks::sink>(log_sink));
    }
  }

  void add_routes();
  void add_operation_routes();
  void add_debug_routes();
  Result<void> listen();
};

void Daemon::Impl::add_routes() {
  router.add_sync(server::Method::kGet, "/1.0",
                  [this](server::Request&) -> Result<server::Response> {
                    api::ServerInfo info{.version = VIREO_VERSION,
                                         .api_extensions = kApiExtensions,
                                         .auth = "trusted",
                                         .host = host};
                    return server::Response::json(api::to_json(info));
                  });
  router.add_sync(server::Method::kGet, "/", [](server::Request&) -> Result<server::Response> {
    return server::Response::json(Json::array({"/1.0"}));
  });
  add_operation_routes();
  objects.register_kind(profile_kind(), router);
  objects.register_kind(vms->kind(), router);
  vms->add_routes(router);
  networks->add_routes(router);
  storage->add_routes(router);
  add_sandbox_routes(router, events, operations, (config.root / "apps").string());
  auto images = add_image_routes(router, events, operations, config.root);
  vms->set_images(images);
  vms->set_tls_identity(config.tls_cert, config.tls_key);
  add_container_routes(router, events, operations, io, images, config.root, networks.get(),
                       storage.get());
  if (config.debug_api) add_debug_routes();
}

void Daemon::Impl::add_operation_routes() {
  using server::Method;
  router.add_sync(Method::kGet, "/1.0/operations",
                  [this](server::Request&) -> Result<server::Response> {
                    Json list = Json::array();
                    for (const auto& op : operations.list()) list.push_back(api::to_json(op));
                    return server::Response::json(std::move(list));
                  });
  router.add(Method::kGet, "/1.0/operations/{id}",
             [this](server::Request& req, server::Responder respond) {
               const std::string id = req.params["id"];
               auto wait = req.query_int("wait", -1, -1, 3600);
               if (!wait) return respond(server::Response::error(wait.error()));
               auto answer = [id, respond](std::optional<api::Operation> op) {
                 if (!op)
                   return respond(server::Response::error(
                       Error(ErrorCode::kNotFound, fmt::format("operation {} not found", id))));
                 respond(server::Response::json(api::to_json(*op)));
               };
               if (*wait < 0) return answer(operations.get(id));
               operations.wait_async(id, std::chrono::seconds(*wait), std::move(answer));
             });
  router.add_sync(Method::kDelete, "/1.0/operations/{id}",
                  [this](server::Request& req) -> Result<server::Response> {
                    auto op = TRY(operations.cancel(req.params["id"]));
                    return server::Response::json(api::to_json(op), 202);
                  });
}

// Test hooks: an operation that sleeps with progress, to exercise waits, cancellation and
// progress reporting end to end without a real long action.
void Daemon::Impl::add_debug_routes() {
  router.add_sync(
      server::Method::kPost, "/1.0/debug/sleep",
      [this](server::Request& req) -> Result<server::Response> {
        Json body = TRY(req.json_body());
        double seconds = body.value("seconds", 1.0);
        bool fail = body.value("fail", false);
        if (seconds < 0 || seconds > 3600)
          return make_error(ErrorCode::kInvalidArgument, "seconds must be between 0 and 3600");
        auto op = operations.start(
            fmt::format("Sleeping {} s", seconds), Json::object(), server::Cancellable::kYes,
            [seconds, fail](server::OperationContext& ctx) -> Result<Json> {
              const int steps = 20;
              for (int i = 1; i <= steps; ++i) {
                std::mutex m;
                std::condition_variable_any cv;
                std::unique_lock lock(m);
                auto token = ctx.stop_token();
                cv.wait_for(lock, token, std::chrono::duration<double>(seconds / steps),
                            [] { return false; });
                if (ctx.cancelled()) return make_error(ErrorCode::kCancelled, "sleep cancelled");
                ctx.set_progress(i * 100 / steps, "sleeping");
              }
              if (fail) return make_error(ErrorCode::kIo, "sleep failed as asked");
              return Json{{"slept", seconds}};
            });
        return server::accepted(op);
      });
}

// TLS first: a connectable Unix socket is how local clients and scripts know vireod is up.
Result<void> Daemon::Impl::listen() {
  if (!config.listen.empty()) {
    if (config.tls_cert.empty() || config.tls_key.empty())
      return make_error(ErrorCode::kInvalidArgument, "--listen needs --tls-cert and --tls-key");
    auto [host_part, port] = TRY(split_listen(config.listen));
    tls_port = TRY(http->listen_tls(host_part, port, config.tls_cert, config.tls_key));
  }
  TRY(make_dirs(std::filesystem::path(config.socket).parent_path(), 0755));
  return http->listen_unix(config.socket, 0660);
}

Result<std::unique_ptr<Daemon>> Daemon::create(DaemonConfig config) {
  TRY_CTX(make_dirs(config.root, 0711), "state root");
  Fd lock(::open((config.root / "vireod.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) return errno_error("open lock file in " + config.root.string());
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0)
    return make_error(ErrorCode::kConflict,
                      "another vireod is running on state root {}; stop it first",
                      config.root.string());
  auto store = TRY(store::Store::open(database_path(config.root)));
  auto impl = std::make_unique<Impl>(std::move(config), std::move(lock), std::move(store));
  impl->host = gather_host_facts();
  impl->networks =
      std::make_unique<NetworkManager>(impl->config.root, impl->events, impl->config.vxlan_local);
  impl->storage =
      std::make_unique<StorageManager>(impl->config.root, impl->events, impl->operations);
  impl->vms = std::make_unique<VmManager>(impl->config.root, *impl->store, impl->events,
                                          impl->operations, impl->host.accelerator,
                                          impl->networks.get(), impl->storage.get());
  impl->http = std::make_unique<server::HttpServer>(
      impl->io, impl->router, impl->events,
      server::Credentials{.token_valid =
                              [s = impl->store.get()](const std::string& token) {
                                return s->token_hash_known(sha256_hex(token)).value_or(false);
                              },
                          .certificate_trusted =
                              [s = impl->store.get()](const std::string& fp) {
                                return s->certificate_trusted(fp).value_or(false);
                              }},
      server::ServerLimits{.body_limit = impl->config.body_limit});
  impl->add_routes();
  TRY(impl->objects.recover());
  impl->networks->start();
  if (auto r = impl->storage->start(); !r)
    spdlog::warn("storage pools unavailable for now: {}", r.error().message());
  impl->vms->reconcile();
  return std::unique_ptr<Daemon>(new Daemon(std::move(impl)));
}

Daemon::Daemon(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Daemon::~Daemon() = default;

Result<void> Daemon::run(const std::function<void()>& on_ready) {
  Impl& d = *impl_;
  TRY(d.listen());
  d.log_sink = std::make_shared<EventLogSink>(d.events);
  d.log_sink->set_level(spdlog::level::info);
  spdlog::default_logger()->sinks().push_back(d.log_sink);
  asio::signal_set signals(d.io, SIGTERM, SIGINT);
  signals.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("received signal {}, shutting down", sig);
    stop();
  });
  spdlog::info("vireod {} serving on {}{}", VIREO_VERSION, d.config.socket,
               d.tls_port ? fmt::format(" and TLS port {}", d.tls_port) : "");
  if (on_ready) on_ready();
  d.io.run();
  d.operations.shutdown();
  ::unlink(d.config.socket.c_str());
  spdlog::info("vireod stopped");
  return {};
}

void Daemon::stop() {
  asio::post(impl_->io, [this] {
    impl_->http->stop();
    impl_->operations.shutdown();
    impl_->io.stop();
  });
}

uint16_t Daemon::tls_port() const {
  return impl_->tls_port;
}

}  // namespace vireo::daemon
