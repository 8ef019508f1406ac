#include "storage/storaged/storaged.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>

#include "base/file.h"
#include "base/line_server.h"
#include "base/log.h"

namespace vireo::storage {
namespace {

enum Tag : uint64_t {
  kListener = 1ull << 32,
  kSignal = 2ull << 32,
  kStop = 3ull << 32,
  kClient = 4ull << 32
};

Result<void> watch(int epoll, int fd, uint64_t tag, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tag;
  if (::epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev) < 0) return errno_error("epoll_ctl add");
  return {};
}

Json error_reply(const Error& e) {
  return Json{{"ok", false}, {"error", e.message()}, {"code", std::string(to_string(e.code()))}};
}

}  // namespace

Result<std::unique_ptr<Storaged>> Storaged::create(const StoragedOptions& options) {
  if (options.nbd_listen.empty() && options.nbd_tls.enabled())
    return make_error(ErrorCode::kInvalidArgument,
                      "TLS options need a TCP listener (the Unix socket is always plain)");
  std::unique_ptr<Storaged> s(new Storaged());
  s->options_ = options;
  TRY_CTX(make_dirs(options.state_dir / "pools", 0700), "state directory");
  // One server per state directory: a second one would serve the same files twice.
  std::string lock_path = (options.state_dir / "lock").string();
  s->lock_ = Fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!s->lock_) return errno_error("open " + lock_path);
  if (::flock(s->lock_.get(), LOCK_EX | LOCK_NB) != 0)
    return make_error(ErrorCode::kConflict, "another vireo-storaged uses {}",
                      options.state_dir.string());
  s->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!s->epoll_) return errno_error("epoll_create1");
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  ::pthread_sigmask(SIG_BLOCK, &mask, nullptr);  // before the NBD threads start: they inherit it
  ::signal(SIGPIPE, SIG_IGN);
  s->signals_.reset(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!s->signals_) return errno_error("signalfd");
  s->stop_event_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!s->stop_event_) return errno_error("eventfd");
  TRY(watch(s->epoll_.get(), s->signals_.get(), kSignal, EPOLLIN));
  TRY(watch(s->epoll_.get(), s->stop_event_.get(), kStop, EPOLLIN));
  s->nbd_ = TRY(nbd::NbdServer::create({}));
  s->load_pools();
  TRY_CTX(s->nbd_->listen_unix(options.nbd_socket), "NBD socket");
  if (!options.nbd_listen.empty()) {
    auto [host, port] = TRY_CTX(nbd::parse_host_port(options.nbd_listen), "NBD listen address");
    s->tcp_address_ = TRY(s->nbd_->listen_tcp(host, port, options.nbd_tls));
    if (!options.nbd_tls.enabled())
      spdlog::warn(
          "vireo-storaged: NBD on {} is plain TCP: anyone who can reach it can read and write "
          "every volume (give --tls-cert and --tls-key)",
          s->tcp_address_);
  }
  s->listener_ = TRY_CTX(listen_unix_socket(options.control_socket), "control socket");
  TRY(watch(s->epoll_.get(), s->listener_.get(), kListener, EPOLLIN));
  Storaged* self = s.get();
  s->clients_ = std::make_unique<LineClients>(
      s->epoll_.get(), [](int fd) { return kClient | uint32_t(fd); },
      [self](const std::string& line) { return self->handle_line(line); });
  nbd::NbdServer* server = s->nbd_.get();
  s->nbd_thread_ = std::thread([server] {
    if (Result<void> r = server->run(); !r)
      spdlog::error("vireo-storaged: nbd: {}", r.error().message());
  });
  return s;
}

Storaged::~Storaged() {
  if (nbd_) nbd_->stop();
  if (nbd_thread_.joinable()) nbd_thread_.join();
  for (auto& [name, e] : pools_)
    for (auto& [vol, dev] : e.devices) (void)dev->flush();
  nbd_.reset();
  pools_.clear();  // thin pools write their checkpoint
  if (listener_) ::unlink(options_.control_socket.c_str());
}

std::filesystem::path Storaged::def_path(const std::string& pool) const {
  return options_.state_dir / "pools" / (pool + ".json");
}

void Storaged::load_pools() {
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(options_.state_dir / "pools", ec)) {
    if (f.path().extension() != ".json") continue;
    Result<std::string> text = read_file(f.path());
    Result<Json> j = text ? parse_json(*text) : Result<Json>(std::unexpected(text.error()));
    Result<PoolConfig> c =
        j ? pool_config_from_json(*j) : Result<PoolConfig>(std::unexpected(j.error()));
    if (!c) {
      spdlog::error("vireo-storaged: pool definition {}: {}", f.path().string(),
                    c.error().message());
      continue;
    }
    PoolEntry& e = pools_[c->name];
    e.config = *c;
    Result<std::unique_ptr<Pool>> p = Pool::open(*c);
    if (!p) {
      e.error = p.error().message();
      spdlog::error("vireo-storaged: {}", e.error);
      continue;
    }
    e.pool = std::move(*p);
    Result<std::vector<VolumeInfo>> vols = e.pool->volumes();
    if (!vols) {
      e.error = vols.error().message();
      continue;
    }
    for (const VolumeInfo& v : *vols)
      if (Result<void> r = export_volume(e, v.name); !r)
        spdlog::error("vireo-storaged: export {}/{}: {}", c->name, v.name, r.error().message());
  }
}

Result<void> Storaged::export_volume(PoolEntry& e, const std::string& vol) {
  std::shared_ptr<BlockDevice> dev = TRY(e.pool->open_volume(vol));
  std::string name = e.config.name + "/" + vol;
  nbd::ExportConfig config{name, dev, dev->read_only(), "vireo volume " + name};
  if (e.devices.count(vol))
    TRY(nbd_->replace_export(std::move(config)));
  else
    TRY(nbd_->add_export(std::move(config)));
  e.devices[vol] = std::move(dev);
  return {};
}

void Storaged::unexport_volume(PoolEntry& e, const std::string& vol) {
  nbd_->remove_export(e.config.name + "/" + vol);
  if (auto it = e.devices.find(vol); it != e.devices.end()) {
    (void)it->second->flush();
    e.devices.erase(it);
  }
}

Result<void> Storaged::flush_devices(PoolEntry& e) {
  for (auto& [vol, dev] : e.devices) TRY_CTX(dev->flush(), "flush {}", vol);
  return {};
}

std::string Storaged::handle_line(std::string_view line) {
  Result<Json> request = parse_json(line);
  if (!request) return dump_json(error_reply(request.error()));
  return dump_json(handle(*request));
}

Json Storaged::handle(const Json& request) {
  if (!request.is_object())
    return error_reply(Error(ErrorCode::kInvalidArgument, "request must be a JSON object"));
  auto op = request.find("op");
  if (op == request.end() || !op->is_string())
    return error_reply(Error(ErrorCode::kInvalidArgument, "missing field 'op'"));
  std::string name = op->get<std::string>();
  Result<Json> reply;
  try {
    reply = dispatch(name, request);
  } catch (const std::exception& ex) {  // nlohmann type errors on odd input
    reply = make_error(ErrorCode::kInvalidArgument, "{}", ex.what());
  }
  if (!reply) return error_reply(std::move(reply.error()).with_context(name));
  Json out = std::move(*reply);
  out["ok"] = true;
  return out;
}

Result<Json> Storaged::dispatch(const std::string& op, const Json& r) {
  if (op == "pool.create") return pool_create(r);
  if (op == "pool.ls") return pool_list();
  if (op == "pool.show") return pool_show(r);
  if (op == "pool.rm") return pool_remove(r);
  if (op == "pool.check") return pool_check(r);
  if (op == "vol.create") return vol_create(r);
  if (op == "vol.ls") return vol_list(r);
  if (op == "vol.show") return vol_show(r);
  if (op == "vol.rm") return vol_remove(r);
  if (op == "vol.resize") return vol_resize(r);
  if (op == "vol.snapshot") return vol_copy(r, VolumeAccess::kReadOnly);
  if (op == "vol.clone") return vol_copy(r, VolumeAccess::kReadWrite);
  if (op == "vol.restore") return vol_restore(r);
  if (op == "vol.import") return vol_import(r);
  if (op == "vol.export") return vol_export(r);
  if (op == "ping") return Json{{"nbd_socket", options_.nbd_socket.string()}};
  return make_error(ErrorCode::kInvalidArgument, "unknown op '{}'", op);
}

void Storaged::stop() {
  uint64_t one = 1;
  (void)!::write(stop_event_.get(), &one, sizeof one);
}

Result<void> Storaged::run() {
  spdlog::info("vireo-storaged: control on {}, NBD on {}{}", options_.control_socket.string(),
               options_.nbd_socket.string(),
               tcp_address_.empty() ? ""
                                    : fmt::format(" and {} ({})", tcp_address_,
                                                  options_.nbd_tls.enabled() ? "TLS" : "plain"));
  epoll_event events[32];
  while (!stop_) {
    int n = ::epoll_wait(epoll_.get(), events, 32, -1);
    if (n < 0 && errno != EINTR) return errno_error("epoll_wait");
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events[i].data.u64;
      if (tag == kListener) {
        clients_->accept_from(listener_.get());
      } else if (tag == kSignal || tag == kStop) {
        spdlog::info("vireo-storaged: stopping");
        stop_ = true;
      } else {
        clients_->on_event(int(uint32_t(tag)), events[i].events);
      }
    }
  }
  return {};
}

}  // namespace vireo::storage
