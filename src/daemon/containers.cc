#include "daemon/containers.h"

#include "daemon/storage.h"

#include <unistd.h>

#include <list>
#include <mutex>
#include <set>
#include <thread>

#include <boost/asio/post.hpp>

#include "api/event.h"
#include "base/log.h"
#include "base/subprocess.h"
#include "containers/engine.h"
#include "daemon/container_attach.h"
#include "daemon/container_exec.h"
#include "daemon/container_volumes.h"
#include "daemon/image_manager.h"
#include "daemon/networks.h"

namespace vireo::daemon {

namespace {

// An exec without a terminal is a batch command: bounded so that a hung one ends.
constexpr std::chrono::hours kExecTimeout{1};

namespace fs = std::filesystem;
using containers::Container;
using containers::Engine;
using server::Method;
using server::Request;
using server::Responder;
using server::Response;

constexpr const char* kContainers = "/1.0/containers";
constexpr auto kMaxWait = std::chrono::hours(24 * 365);

// The engine's view of the host's networks: vireo-netd through the NetworkManager.
class NetdBackend final : public containers::NetworkBackend {
 public:
  explicit NetdBackend(NetworkManager& networks) : networks_(networks) {}
  std::string default_network() override { return kDefaultNetwork; }
  Result<void> reserve(containers::Attachment& a, const std::string& ip,
                       const std::string& dns_name) override {
    auto lease = TRY(networks_.reserve_address(a.network, a.mac, ip, dns_name));
    a.ip = lease.ip;
    a.prefix = lease.prefix;
    a.gateway = lease.gateway;
    a.mtu = lease.mtu;
    return {};
  }
  void release(const containers::Attachment& a) override {
    networks_.release_address(a.network, a.mac);
  }
  Result<void> attach(const containers::Attachment& a) override {
    return networks_.attach_interface(a.network, a.iface);
  }
  void detach(const containers::Attachment& a) override { networks_.detach_interface(a.iface); }
  Result<void> forward(const containers::Attachment& a,
                       const containers::PublishedPort& p) override {
    return networks_.add_forward(a.network, p.host_port,
                                 fmt::format("{}:{}", a.ip, p.container_port), p.protocol);
  }
  void unforward(const containers::PublishedPort& p) override {
    networks_.remove_forward(p.host_port, p.protocol);
  }

 private:
  NetworkManager& networks_;
};

class ContainerService : public std::enable_shared_from_this<ContainerService> {
 public:
  ContainerService(server::EventHub& events, server::OperationManager& operations,
                   boost::asio::io_context& io, std::shared_ptr<ImageManager> images, fs::path root,
                   NetworkManager* networks, StorageManager* storage)
      : events_(events),
        operations_(operations),
        io_(io),
        images_(std::move(images)),
        root_(std::move(root)) {
    // A rootless vireod's containers cannot join Vireo networks (veth pairs and netd ports need
    // root): without a backend their default network is none.
    if (networks && ::geteuid() == 0) backend_ = std::make_unique<NetdBackend>(*networks);
    // Loop mounts need root too.
    if (storage && ::geteuid() == 0)
      volumes_ = std::make_unique<StorageVolumes>(*storage, root_ / "volumes");
  }

  ~ContainerService() {
    std::list<std::thread> threads;
    {
      std::lock_guard lock(threads_mutex_);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
    std::lock_guard lock(open_mutex_);
    engine_.reset();
  }

  Result<Engine*> engine() {
    std::lock_guard lock(open_mutex_);
    if (engine_) return engine_.get();
    auto* store = TRY(images_->store());
    auto e = Engine::open({.state_dir = root_,
                           .images = store,
                           .runtime = find_sibling_program("vireo-runtime"),
                           .monitor = find_sibling_program("vireo-monitor"),
                           .on_event =
                               [this](const std::string& action, const Container& c) {
                                 Json meta = api::lifecycle_metadata(
                                     action, std::string(kContainers) + "/" + c.name);
                                 meta["id"] = c.id;
                                 events_.publish("lifecycle", std::move(meta));
                               },
                           .networks = backend_.get(),
                           .volumes = volumes_.get()});
    if (!e) return std::unexpected(std::move(e.error()).with_context("containers"));
    engine_ = std::move(*e);
    return engine_.get();
  }

  // Manifest digests of the images that containers use, which an image prune must keep.
  std::vector<Digest> images_in_use() {
    std::vector<Digest> out;
    Engine* e = nullptr;
    {
      std::lock_guard lock(open_mutex_);
      e = engine_.get();
    }
    if (!e) return out;
    for (const auto& c : e->list(true))
      if (auto d = Digest::parse(c.image_digest); d) out.push_back(*d);
    return out;
  }

  // The named volumes of every container (stopped ones too: Docker keeps their volumes).
  std::vector<VolumeUser> volume_users() {
    std::vector<VolumeUser> out;
    Engine* e = nullptr;
    {
      std::lock_guard lock(open_mutex_);
      e = engine_.get();
    }
    if (!e) return out;
    for (const auto& c : e->list(true))
      for (const auto& m : c.config.value("mounts", Json::array()))
        if (m.is_object() && m.contains("volume") && m["volume"].is_string())
          out.push_back({m["volume"].get<std::string>(), "container", c.name});
    return out;
  }

  // Runs work on its own thread and answers on the io thread.
  void offload(std::function<Result<Response>()> work, Responder respond) {
    std::lock_guard lock(threads_mutex_);
    for (auto it = threads_.begin(); it != threads_.end();) {
      if (finished_.contains(it->get_id())) {
        finished_.erase(it->get_id());
        it->join();
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
    // The thread holds no reference to the service: the destructor joins it.
    threads_.emplace_back(
        [self = this, work = std::move(work), respond = std::move(respond)]() mutable {
          auto r = work();
          Response response = r ? std::move(*r) : Response::error(r.error());
          boost::asio::post(
              self->io_, [respond = std::move(respond), response = std::move(response)]() mutable {
                respond(std::move(response));
              });
          std::lock_guard lock(self->threads_mutex_);
          self->finished_.insert(std::this_thread::get_id());
        });
  }

  boost::asio::io_context& io() { return io_; }

  // An operation that ends when the container's current run ends; its result is the container
  // as the run ended.
  api::Operation wait_operation(const std::string& what, const Container& c) {
    auto self = shared_from_this();
    std::string id = c.id;
    return operations_.start(
        fmt::format("{} container {}", what, c.name), resources(c.name), server::Cancellable::kYes,
        [self, id](server::OperationContext& ctx) -> Result<Json> {
          auto* e = TRY(self->engine());
          return containers::to_json(TRY(e->wait(id, kMaxWait, ctx.stop_token())));
        });
  }

  static Json resources(const std::string& name) {
    return Json{{"containers", {std::string(kContainers) + "/" + name}}};
  }

  server::OperationManager& operations() { return operations_; }

 private:
  server::EventHub& events_;
  server::OperationManager& operations_;
  boost::asio::io_context& io_;
  std::shared_ptr<ImageManager> images_;
  fs::path root_;
  std::unique_ptr<NetdBackend> backend_;
  std::unique_ptr<StorageVolumes> volumes_;
  std::mutex open_mutex_;
  std::unique_ptr<Engine> engine_;
  std::mutex threads_mutex_;
  std::list<std::thread> threads_;
  std::set<std::thread::id> finished_;
};

// An optional JSON body: empty is {}.
Result<Json> optional_body(const Request& req) {
  if (req.body.find_first_not_of(" \t\r\n") == std::string::npos) return Json::object();
  Json body = TRY(req.json_body());
  if (!body.is_object()) return make_error(ErrorCode::kInvalidArgument, "body must be an object");
  return body;
}

// {"timeout": seconds}, default 10.
Result<std::chrono::seconds> stop_timeout(const Request& req) {
  Json body = TRY(optional_body(req));
  for (const auto& [k, v] : body.items())
    if (k != "timeout") return make_error(ErrorCode::kInvalidArgument, "unknown field '{}'", k);
  if (!body.contains("timeout")) return std::chrono::seconds(10);
  const Json& t = body["timeout"];
  if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > 3600)
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'timeout' must be an integer number of seconds (0-3600)");
  return std::chrono::seconds(t.get<int64_t>());
}

bool query_flag(const Request& req, const char* key) {
  auto it = req.query.find(key);
  return it != req.query.end() && (it->second == "1" || it->second == "true");
}

Result<containers::LogQuery> log_query(const Request& req) {
  containers::LogQuery q;
  if (req.query.contains("tail")) q.tail = TRY(req.query_int("tail", 0, 0, 1 << 30));
  if (auto s = req.query.find("since"); s != req.query.end())
    q.since_ns = TRY(containers::parse_since(s->second));
  if (auto c = req.query.find("cursor"); c != req.query.end()) q.cursor = c->second;
  return q;
}

Json logs_json(const containers::LogPage& page, bool running) {
  Json lines = Json::array();
  for (const auto& l : page.lines)
    lines.push_back({{"time", l.time}, {"stream", l.stream}, {"log", l.log}});
  return {{"lines", lines}, {"cursor", page.cursor}, {"running", running}};
}

void add_collection_routes(server::Router& router, const std::shared_ptr<ContainerService>& s) {
  router.add_sync(Method::kGet, kContainers, [s](Request& req) -> Result<Response> {
    auto* e = TRY(s->engine());
    Json list = Json::array();
    for (const auto& c : e->list(query_flag(req, "all"))) list.push_back(containers::to_json(c));
    return Response::json(std::move(list));
  });
  router.add(Method::kPost, kContainers, [s](Request& req, Responder respond) {
    auto body = req.json_body();
    if (!body) return respond(Response::error(body.error()));
    auto parsed = containers::parse_create_request(*body);
    if (!parsed) return respond(Response::error(parsed.error()));
    s->offload(
        [s, r = std::move(*parsed)]() -> Result<Response> {
          auto* e = TRY(s->engine());
          Container c = TRY(e->create(r));
          if (!r.wait) return Response::json(containers::to_json(c), 201);
          return server::accepted(s->wait_operation("Run", c));
        },
        std::move(respond));
  });
}

void add_item_routes(server::Router& router, const std::shared_ptr<ContainerService>& s) {
  const std::string one = std::string(kContainers) + "/{name}";
  router.add_sync(Method::kGet, one, [s](Request& req) -> Result<Response> {
    auto* e = TRY(s->engine());
    return Response::json(containers::to_json(TRY(e->get(req.params["name"]))));
  });
  router.add(Method::kDelete, one, [s](Request& req, Responder respond) {
    std::string name = req.params["name"];
    bool force = query_flag(req, "force");
    s->offload(
        [s, name, force]() -> Result<Response> {
          auto* e = TRY(s->engine());
          TRY(e->remove(name, force));
          return Response::json(Json::object());
        },
        std::move(respond));
  });
  router.add(Method::kPost, one + "/start", [s](Request& req, Responder respond) {
    std::string name = req.params["name"];
    s->offload(
        [s, name]() -> Result<Response> {
          auto* e = TRY(s->engine());
          return Response::json(containers::to_json(TRY(e->start(name))));
        },
        std::move(respond));
  });
  for (const char* action : {"stop", "restart"}) {
    bool restart = std::string_view(action) == "restart";
    router.add_sync(
        Method::kPost, one + "/" + action, [s, restart](Request& req) -> Result<Response> {
          auto* e = TRY(s->engine());
          auto timeout = TRY(stop_timeout(req));
          Container c = TRY(e->get(req.params["name"]));
          std::string id = c.id;
          auto op = s->operations().start(
              fmt::format("{} container {}", restart ? "Restart" : "Stop", c.name),
              ContainerService::resources(c.name), server::Cancellable::kNo,
              [s, id, timeout, restart](server::OperationContext&) -> Result<Json> {
                auto* e = TRY(s->engine());
                Container done = restart ? TRY(e->restart(id, timeout)) : TRY(e->stop(id, timeout));
                return containers::to_json(done);
              });
          return server::accepted(op);
        });
  }
  router.add_sync(Method::kPost, one + "/kill", [s](Request& req) -> Result<Response> {
    auto* e = TRY(s->engine());
    Json body = TRY(optional_body(req));
    int signal = SIGKILL;
    for (const auto& [k, v] : body.items()) {
      if (k != "signal") return make_error(ErrorCode::kInvalidArgument, "unknown field '{}'", k);
      if (v.is_number_integer())
        signal = TRY(containers::parse_signal(std::to_string(v.get<int64_t>())));
      else if (v.is_string())
        signal = TRY(containers::parse_signal(v.get<std::string>()));
      else
        return make_error(ErrorCode::kInvalidArgument,
                          "field 'signal' must be a name (\"KILL\", \"SIGTERM\") or a number");
    }
    return Response::json(containers::to_json(TRY(e->kill(req.params["name"], signal))));
  });
  router.add_sync(Method::kPost, one + "/update", [s](Request& req) -> Result<Response> {
    auto* e = TRY(s->engine());
    auto u = TRY(containers::parse_update_request(TRY(req.json_body())));
    return Response::json(containers::to_json(TRY(e->update(req.params["name"], u))));
  });
  router.add_sync(Method::kGet, one + "/stats", [s](Request& req) -> Result<Response> {
    auto* e = TRY(s->engine());
    auto st = TRY(e->stats(req.params["name"]));
    return Response::json({{"cpu_seconds", st.cpu_seconds},
                           {"memory", st.memory_bytes},
                           {"memory_limit", st.memory_limit},
                           {"pids", st.pids},
                           {"net_rx", st.net_rx},
                           {"net_tx", st.net_tx},
                           {"block_read", st.block_read},
                           {"block_write", st.block_write}});
  });
  router.add_sync(Method::kGet, one + "/top", [s](Request& req) -> Result<Response> {
    auto* e = TRY(s->engine());
    Json list = Json::array();
    for (const auto& p : TRY(e->top(req.params["name"])))
      list.push_back({{"pid", p.pid},
                      {"uid", p.uid},
                      {"state", p.state},
                      {"cpu_seconds", p.cpu_seconds},
                      {"rss", p.rss_bytes},
                      {"command", p.command}});
    return Response::json(std::move(list));
  });
  // A literal segment: wins over /1.0/containers/{name}.
  router.add_sync(
      Method::kPost, std::string(kContainers) + "/prune", [s](Request&) -> Result<Response> {
        auto* e = TRY(s->engine());
        Json removed = Json::array();
        for (const auto& c : e->list(true)) {
          if (c.state != containers::State::kExited && c.state != containers::State::kCreated)
            continue;
          if (e->remove(c.id, false)) removed.push_back(c.name);
        }
        return Response::json({{"removed", removed}});
      });
  router.add_sync(Method::kPost, one + "/exec", [s](Request& req) -> Result<Response> {
    auto* e = TRY(s->engine());
    auto request = TRY(containers::parse_exec_request(TRY(req.json_body())));
    Container c = TRY(e->get(req.params["name"]));
    if (c.state != containers::State::kRunning)
      return make_error(ErrorCode::kConflict, "container {} is not running", c.name);
    std::string id = c.id;
    auto op = s->operations().start(
        fmt::format("Exec {} in container {}", request.command.front(), c.name),
        ContainerService::resources(c.name), server::Cancellable::kNo,
        [s, id, request](server::OperationContext&) -> Result<Json> {
          auto* e = TRY(s->engine());
          auto r = TRY(e->exec(id, request, kExecTimeout));
          return Json{{"exit_code", r.exit_code},
                      {"stdout", r.out},
                      {"stderr", r.err},
                      {"truncated", r.truncated}};
        });
    return server::accepted(op);
  });
  // {"direction": "in"|"out", "container_path", "host_path"}: `vireo ct cp` (host paths are the
  // daemon's: the API is local or root-equivalent, as for image import and export).
  router.add_sync(Method::kPost, one + "/copy", [s](Request& req) -> Result<Response> {
    auto* e = TRY(s->engine());
    Json body = TRY(req.json_body());
    if (!body.is_object())
      return make_error(ErrorCode::kInvalidArgument,
                        "body must be {\"direction\", \"container_path\", \"host_path\"}");
    for (const auto& [k, v] : body.items())
      if (k != "direction" && k != "container_path" && k != "host_path")
        return make_error(ErrorCode::kInvalidArgument, "unknown field '{}'", k);
    const std::string direction = body.value("direction", "");
    const std::string inside = body.value("container_path", "");
    const std::string host = body.value("host_path", "");
    if ((direction != "in" && direction != "out") || inside.empty() || !host.starts_with('/'))
      return make_error(ErrorCode::kInvalidArgument,
                        "direction must be in or out, container_path given and host_path "
                        "absolute");
    Container c = TRY(e->get(req.params["name"]));
    auto op = s->operations().start(
        fmt::format("Copy {} container {}", direction == "in" ? "into" : "out of", c.name),
        ContainerService::resources(c.name), server::Cancellable::kNo,
        [s, id = c.id, direction, inside, host](server::OperationContext&) -> Result<Json> {
          auto* e = TRY(s->engine());
          if (direction == "in")
            TRY(e->copy_in(id, host, inside));
          else
            TRY(e->copy_out(id, inside, host));
          return Json::object();
        });
    return server::accepted(op);
  });
  router.add_sync(Method::kPost, one + "/wait", [s](Request& req) -> Result<Response> {
    auto* e = TRY(s->engine());
    Container c = TRY(e->get(req.params["name"]));
    return server::accepted(s->wait_operation("Wait for", c));
  });
  router.add(Method::kGet, one + "/logs", [s](Request& req, Responder respond) {
    auto answer = [&]() -> Result<Response> {
      auto* e = TRY(s->engine());
      auto q = TRY(log_query(req));
      bool follow = query_flag(req, "follow");
      auto timeout = std::min<int64_t>(TRY(req.query_int("timeout", 20, 0, 86400)), 30);
      std::string name = req.params["name"];
      Container c = TRY(e->get(name));
      bool running =
          c.state == containers::State::kRunning || c.state == containers::State::kRestarting;
      if (!follow || !running) {
        auto page = TRY(e->logs(c.id, q));
        return Response::json(logs_json(page, running));
      }
      e->follow_logs(
          c.id, q, std::chrono::seconds(timeout),
          [io = &s->io(), respond](Result<containers::LogPage> page, bool still_running) {
            Response r = page ? Response::json(logs_json(*page, still_running))
                              : Response::error(page.error());
            boost::asio::post(*io,
                              [respond, r = std::move(r)]() mutable { respond(std::move(r)); });
          });
      return Response{.status = 0};  // answered by the follower
    };
    auto r = answer();
    if (!r) return respond(Response::error(r.error()));
    if (r->status != 0) respond(std::move(*r));
  });
}

}  // namespace

void add_container_routes(server::Router& router, server::EventHub& events,
                          server::OperationManager& operations, boost::asio::io_context& io,
                          const std::shared_ptr<ImageManager>& images, const fs::path& state_root,
                          NetworkManager* networks, StorageManager* storage) {
  auto s = std::make_shared<ContainerService>(events, operations, io, images,
                                              state_root / "containers", networks, storage);
  // At start: re-adopt what runs and apply the restart policies; a failure is retried by the
  // first request.
  if (auto e = s->engine(); !e)
    spdlog::warn("containers unavailable for now: {}", e.error().message());
  images->set_in_use([weak = std::weak_ptr<ContainerService>(s)] {
    auto service = weak.lock();
    return service ? service->images_in_use() : std::vector<Digest>{};
  });
  if (storage)
    storage->add_volume_users([weak = std::weak_ptr<ContainerService>(s)] {
      auto service = weak.lock();
      return service ? service->volume_users() : std::vector<VolumeUser>{};
    });
  add_collection_routes(router, s);
  add_item_routes(router, s);
  add_container_attach_route(router, [s] { return s->engine(); });
  add_container_exec_route(router, [s] { return s->engine(); });
}

}  // namespace vireo::daemon
