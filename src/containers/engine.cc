#include "containers/engine.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/file.h"
#include "base/ids.h"
#include "base/log.h"
#include "base/rollback.h"
#include "base/subprocess.h"
#include "base/time.h"
#include "containers/engine_impl.h"
#include "containers/rootless.h"
#include "image/image_store.h"
#include "image/rootfs.h"

namespace vireo::containers {

namespace fs = std::filesystem;

namespace {

constexpr size_t kGraveyard = 256;
constexpr auto kKillWait = std::chrono::seconds(10);

bool is_hex_id(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

State parse_state(const std::string& s) {
  if (s == "running") return State::kRunning;
  if (s == "exited") return State::kExited;
  if (s == "restarting") return State::kRestarting;
  return State::kCreated;
}

}  // namespace

int pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

int pidfd_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

std::string monitor_dir(const Record& r) {
  return (r.dir / "monitor").string();
}

std::string_view to_string(State s) {
  switch (s) {
    case State::kCreated:
      return "created";
    case State::kRunning:
      return "running";
    case State::kExited:
      return "exited";
    case State::kRestarting:
      return "restarting";
  }
  return "created";
}

Json to_json(const Container& c) {
  Json j = {{"id", c.id},
            {"name", c.name},
            {"image", c.image},
            {"image_digest", c.image_digest},
            {"state", to_string(c.state)},
            {"pid", c.pid},
            {"exit_code", c.exit_code ? Json(*c.exit_code) : Json(nullptr)},
            {"oom_killed", c.oom_killed},
            {"created_at", c.created_at},
            {"started_at", c.started_at},
            {"finished_at", c.finished_at},
            {"restart_count", c.restart_count},
            {"network", c.network ? to_json(*c.network) : Json(nullptr)},
            {"health", c.health ? to_json(*c.health) : Json(nullptr)},
            {"config", c.config}};
  if (!c.error.empty()) j["error"] = c.error;
  return j;
}

Json state_json(const Record& r) {
  Json j = to_json(r.c);
  j.erase("config");
  j["stopped"] = r.stopped;
  j["lower_dirs"] = r.lower_dirs;
  return j;
}

Result<int> parse_signal(std::string_view name) {
  static const std::pair<const char*, int> kSignals[] = {
      {"HUP", SIGHUP},   {"INT", SIGINT},     {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
      {"USR1", SIGUSR1}, {"USR2", SIGUSR2},   {"TERM", SIGTERM}, {"STOP", SIGSTOP},
      {"CONT", SIGCONT}, {"WINCH", SIGWINCH}, {"ALRM", SIGALRM}, {"PIPE", SIGPIPE}};
  std::string n(name);
  std::transform(n.begin(), n.end(), n.begin(), [](char c) { return std::toupper(c); });
  if (n.starts_with("SIG")) n.erase(0, 3);
  for (auto [s, v] : kSignals)
    if (n == s) return v;
  if (!n.empty() && std::all_of(n.begin(), n.end(), [](char c) { return std::isdigit(c); }) &&
      n.size() < 3) {
    int v = std::stoi(n);
    if (v >= 1 && v <= 64) return v;
  }
  return make_error(ErrorCode::kInvalidArgument, "unknown signal '{}'", name);
}

// --- Impl ------------------------------------------------------------------------------------

std::shared_ptr<Record> Engine::Impl::find_locked(const std::string& name, Error* error) {
  for (auto& [id, r] : by_id)
    if (r->c.name == name && !r->removed) return r;
  if (auto it = by_id.find(name); it != by_id.end() && !it->second->removed) return it->second;
  std::shared_ptr<Record> found;
  if (!name.empty() && name.size() < 64) {
    for (auto it = by_id.lower_bound(name); it != by_id.end() && it->first.starts_with(name);
         ++it) {
      if (it->second->removed) continue;
      if (found) {
        *error =
            Error(ErrorCode::kConflict, fmt::format("container id prefix '{}' is ambiguous", name));
        return nullptr;
      }
      found = it->second;
    }
  }
  if (!found) *error = Error(ErrorCode::kNotFound, fmt::format("container {} not found", name));
  return found;
}

Result<std::shared_ptr<Record>> Engine::Impl::find(const std::string& name) {
  std::lock_guard lock(mu);
  Error e(ErrorCode::kNotFound, "");
  auto r = find_locked(name, &e);
  if (!r) return std::unexpected(e);
  return r;
}

void Engine::Impl::emit(const std::string& action, const Container& c) {
  if (o.on_event) o.on_event(action, c);
}

void Engine::Impl::persist(Record& r) {
  std::lock_guard save(r.save);
  Json j;
  uint64_t version = 0;
  {
    std::lock_guard lock(mu);
    if (r.removed) return;
    j = state_json(r);
    version = r.version;
  }
  if (version < r.saved_version) return;
  if (auto w = write_file_atomic(r.dir / "state.json", j.dump(2) + "\n", 0600); !w)
    spdlog::warn("container {}: {}", r.c.name, w.error().message());
  r.saved_version = version;
}

void Engine::Impl::signal_container(Record& r, int sig) {
  if (r.ctr_pidfd && pidfd_signal(r.ctr_pidfd.get(), sig) == 0) return;
  if (!r.ctr_pidfd && r.c.pid > 0) ::kill(r.c.pid, sig);
}

Result<void> Engine::Impl::remove_locked(const std::shared_ptr<Record>& r, bool force) {
  uint64_t runs = 0;
  {
    std::unique_lock lock(mu);
    if (r->removed) return {};
    if (!force && (r->c.state == State::kRunning || r->c.state == State::kRestarting))
      return make_error(ErrorCode::kConflict,
                        "container {} is running: stop it first or use --force", r->c.name);
    if (r->c.state == State::kRunning) {
      r->stopped = true;
      runs = r->runs_ended;
      signal_container(*r, SIGKILL);
      cv.wait_for(lock, kKillWait, [&] { return r->runs_ended != runs; });
      if (r->runs_ended == runs)
        return make_error(ErrorCode::kTimeout, "container {} did not exit after SIGKILL",
                          r->c.name);
    }
    r->restart_at.reset();
    r->stopped = true;
    r->removed = true;
    by_id.erase(r->c.id);
    graveyard.push_back(r);
    if (graveyard.size() > kGraveyard) graveyard.pop_front();
  }
  teardown_network(*r);
  release_volumes(*r);
  if (auto rel = image::release_rootfs(r->dir / "bundle"); !rel)
    spdlog::warn("container {}: {}", r->c.name, rel.error().message());
  std::error_code ec;
  fs::remove_all(r->dir, ec);
  if (ec) spdlog::warn("container {}: remove {}: {}", r->c.name, r->dir.string(), ec.message());
  Container snap;
  {
    std::lock_guard lock(mu);
    snap = r->c;
  }
  emit("container-deleted", snap);
  return {};
}

Result<void> Engine::Impl::load(const fs::path& dir) {
  auto spec = TRY(parse_json(TRY(read_file(dir / "spec.json"))));
  auto st = TRY(parse_json(TRY(read_file(dir / "state.json"))));
  auto r = std::make_shared<Record>();
  r->dir = dir;
  r->req = TRY(parse_create_request(spec));
  r->c.config = to_json(r->req);
  r->c.id = dir.filename().string();
  r->c.name = st.value("name", r->req.name);
  r->c.image = st.value("image", r->req.image);
  r->c.image_digest = st.value("image_digest", "");
  r->c.state = parse_state(st.value("state", ""));
  r->c.pid = st.value("pid", 0);
  if (st.contains("exit_code") && st["exit_code"].is_number_integer())
    r->c.exit_code = st["exit_code"].get<int>();
  r->c.oom_killed = st.value("oom_killed", false);
  r->c.created_at = st.value("created_at", "");
  r->c.started_at = st.value("started_at", "");
  r->c.finished_at = st.value("finished_at", "");
  r->c.restart_count = st.value("restart_count", 0);
  r->c.error = st.value("error", "");
  r->stopped = st.value("stopped", false);
  if (r->req.health && r->c.state == State::kRunning) {
    // Checks go on where the last vireod left them; the first one after one interval.
    reset_health(*r);
    if (st.contains("health") && st["health"].is_object()) {
      r->c.health->status = st["health"].value("status", "starting");
      r->c.health->failing_streak = st["health"].value("failing_streak", 0);
    }
  }
  if (st.contains("network") && st["network"].is_object())
    r->c.network = TRY_CTX(attachment_from_json(st["network"]), "state.json");
  if (st.contains("lower_dirs") && st["lower_dirs"].is_array())
    r->lower_dirs = st["lower_dirs"].get<std::vector<std::string>>();
  if (!valid_name(r->c.name)) return make_error(ErrorCode::kInvalidArgument, "bad name in state");

  bool was_running = r->c.state == State::kRunning;
  Fd monitor_fd;
  if (was_running) {
    if (auto mpid = read_pid(fs::path(monitor_dir(*r)) / "monitor.pid"); mpid) {
      Fd fd(pidfd_open(*mpid));
      auto cmdline = read_file(fmt::format("/proc/{}/cmdline", *mpid));
      // The pid may belong to another process by now: a monitor names its container's id.
      if (fd && cmdline && cmdline->find(r->c.id) != std::string::npos) monitor_fd = std::move(fd);
    }
    if (monitor_fd) r->ctr_pidfd = Fd(pidfd_open(r->c.pid));
    r->run_started = Clock::now();
  }
  {
    std::lock_guard lock(mu);
    for (const auto& [id, other] : by_id)
      if (other->c.name == r->c.name)
        return make_error(ErrorCode::kAlreadyExists, "name {} used twice", r->c.name);
    by_id[r->c.id] = r;
    bool always_restart = r->req.restart.kind == RestartKind::kAlways ||
                          (r->req.restart.kind == RestartKind::kUnlessStopped && !r->stopped);
    if (r->c.state == State::kRestarting ||
        (r->c.state == State::kExited && always_restart && r->c.started_at != "")) {
      r->c.state = State::kRestarting;
      r->stopped = false;
      r->restart_at = Clock::now();
    }
  }
  if (was_running) {
    if (monitor_fd) {
      watch(r, std::move(monitor_fd));
    } else {
      handle_end(r);  // reads exit.json, or records a dead monitor
    }
  }
  return {};
}

// --- Engine ----------------------------------------------------------------------------------

Result<std::unique_ptr<Engine>> Engine::open(EngineOptions options) {
  if (!options.images) return make_error(ErrorCode::kInvalidArgument, "containers: no image store");
  if (options.runtime.empty() || options.monitor.empty())
    return make_error(ErrorCode::kUnavailable,
                      "containers: vireo-runtime or vireo-monitor not found next to vireod or on "
                      "PATH");
  auto impl = std::make_unique<Impl>();
  impl->o = std::move(options);
  impl->runtime_root = impl->o.state_dir / "runtime";
  TRY_CTX(make_dirs(impl->o.state_dir, 0711), "containers");
  TRY_CTX(make_dirs(impl->runtime_root, 0700), "containers");
  TRY(impl->start_watcher());
  impl->start_health();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(impl->o.state_dir, ec)) {
    std::string id = entry.path().filename().string();
    if (!is_hex_id(id)) continue;
    if (auto loaded = impl->load(entry.path()); !loaded)
      spdlog::warn("container {}: not loaded: {}", id.substr(0, 12), loaded.error().message());
  }
  if (ec)
    return make_error(ErrorCode::kIo, "containers: list {}: {}", impl->o.state_dir.string(),
                      ec.message());
  impl->notify();
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Engine::~Engine() {
  impl_->stop_watcher();
  impl_->stop_health();
}

std::vector<Container> Engine::list(bool all) {
  std::lock_guard lock(impl_->mu);
  std::vector<Container> out;
  for (const auto& [id, r] : impl_->by_id)
    if (r->removed)
      continue;
    else if (all || r->c.state == State::kRunning || r->c.state == State::kRestarting)
      out.push_back(r->c);
  std::sort(out.begin(), out.end(),
            [](const Container& a, const Container& b) { return a.created_at > b.created_at; });
  return out;
}

Result<Container> Engine::get(const std::string& name) {
  auto r = TRY(impl_->find(name));
  std::lock_guard lock(impl_->mu);
  return r->c;
}

Result<Container> Engine::create(const CreateRequest& request) {
  Impl& m = *impl_;
  CreateRequest req = request;
  if (!req.name.empty() && !valid_name(req.name))
    return make_error(ErrorCode::kInvalidArgument,
                      "invalid container name '{}': expected [a-zA-Z0-9][a-zA-Z0-9_.-]*", req.name);
  TRY(check_rootless(req));
  auto r = std::make_shared<Record>();
  r->c.id = random_hex(32);
  r->dir = m.o.state_dir / r->c.id;
  Rollback undo;
  {
    // The name is taken by a placeholder record until the container exists (or is rolled back).
    std::lock_guard lock(m.mu);
    auto taken = [&](const std::string& n) {
      return std::any_of(m.by_id.begin(), m.by_id.end(),
                         [&](const auto& e) { return e.second->c.name == n; });
    };
    if (req.name.empty()) {
      for (int i = 0; i < 20 && (req.name.empty() || taken(req.name)); ++i)
        req.name = generate_name();
      if (taken(req.name)) req.name = "ctr-" + random_hex(4);
    }
    if (taken(req.name))
      return make_error(ErrorCode::kAlreadyExists, "container name {} is already in use", req.name);
    TRY(m.check_ports_free(req));
    r->c.name = req.name;
    r->removed = true;  // a placeholder: invisible to persist()
    m.by_id[r->c.id] = r;
  }
  undo.add([&m, id = r->c.id] {
    std::lock_guard lock(m.mu);
    m.by_id.erase(id);
  });

  auto info = m.o.images->show(req.image);
  if (!info) {
    if (info.error().code() == ErrorCode::kNotFound)
      return make_error(ErrorCode::kNotFound, "image {} not found", req.image);
    return std::unexpected(std::move(info.error()));
  }
  if (info->kind == image::ImageKind::kVm)
    return make_error(ErrorCode::kInvalidArgument,
                      "{} is a VM disk image; use vireo vm create --image", req.image);
  auto layers = TRY(m.o.images->unpack(req.image));
  fs::path bundle = r->dir / "bundle";
  Json spec = TRY(build_spec(req, req.name, info->config, layers, bundle / "rootfs",
                             {.rootless = rootless(), .uid = ::geteuid(), .gid = ::getegid()}));

  TRY(make_dirs(r->dir, 0700));
  undo.add([dir = r->dir] {
    std::error_code ec;
    fs::remove_all(dir, ec);
  });
  TRY(m.reserve_network(req, r->c, undo));
  TRY(m.forward_ports(r->c, req.ports, undo));
  if (rootless()) TRY(finish_rootless_spec(spec, req, r->c.id));
  TRY(m.network_spec(*r, spec));
  TRY(make_dirs(bundle / "rootfs", 0755));
  undo.add([bundle] { (void)image::release_rootfs(bundle); });
  bool pending = std::any_of(layers.begin(), layers.end(),
                             [](const image::Layer& l) { return l.has_pending_markers(); });
  if (::geteuid() == 0 && !pending) {
    TRY(make_dirs(bundle / "upper", 0755));
    TRY(make_dirs(bundle / "work", 0700));
    TRY(image::mount_overlay(layers, bundle / "upper", bundle / "work", bundle / "rootfs"));
    for (const auto& l : image::overlay_lower_dirs(layers)) r->lower_dirs.push_back(l.string());
  } else {
    TRY(image::flatten_layers(layers, bundle / "rootfs", ::geteuid() == 0));
  }
  TRY(m.mount_volumes(*r, req, spec, bundle / "rootfs", undo));
  TRY(write_file_atomic(bundle / "config.json", spec.dump(2) + "\n", 0600));
  r->req = req;
  r->req.start = r->req.wait = false;
  TRY(write_file_atomic(r->dir / "spec.json", to_json(r->req).dump(2) + "\n", 0600));
  r->c.image = req.image;
  r->c.image_digest = info->manifest_digest.str();
  r->c.created_at = now_timestamp();
  r->c.config = to_json(r->req);
  r->c.state = State::kCreated;
  {
    std::lock_guard lock(m.mu);
    r->removed = false;
    r->version++;
  }
  m.persist(*r);
  if (!fs::exists(r->dir / "state.json"))
    return make_error(ErrorCode::kIo, "container {}: state.json not written", req.name);
  undo.commit();
  m.emit("container-created", r->c);
  if (!request.start) return get(r->c.id);
  auto started = start(r->c.id);
  // A --rm container that could not start is not kept (as docker run --rm).
  if (!started && req.auto_remove) (void)remove(r->c.id, true);
  return started;
}

Result<Container> Engine::start(const std::string& name) {
  auto r = TRY(impl_->find(name));
  std::lock_guard action(r->action);
  {
    std::lock_guard lock(impl_->mu);
    if (r->removed) return make_error(ErrorCode::kNotFound, "container {} not found", name);
    if (r->c.state == State::kRunning) return r->c;
    r->stopped = false;
    r->restart_at.reset();
  }
  TRY(impl_->start_locked(r));
  std::lock_guard lock(impl_->mu);
  return r->c;
}

Result<Container> Engine::stop(const std::string& name, std::chrono::seconds timeout) {
  Impl& m = *impl_;
  auto r = TRY(m.find(name));
  std::lock_guard action(r->action);
  Container snap;
  bool stopped_something = false;
  {
    std::unique_lock lock(m.mu);
    stopped_something = r->c.state == State::kRunning || r->c.state == State::kRestarting;
    r->stopped = true;
    r->restart_at.reset();
    if (r->c.state == State::kRestarting) {
      r->c.state = State::kExited;
      r->version++;
    } else if (r->c.state == State::kRunning) {
      uint64_t runs = r->runs_ended;
      if (r->monitor_pidfd >= 0)
        pidfd_signal(r->monitor_pidfd, SIGTERM);  // forwarded to the container's init
      else
        m.signal_container(*r, SIGTERM);
      if (!m.cv.wait_for(lock, timeout, [&] { return r->runs_ended != runs; })) {
        m.signal_container(*r, SIGKILL);
        if (!m.cv.wait_for(lock, kKillWait, [&] { return r->runs_ended != runs; }))
          return make_error(ErrorCode::kTimeout, "container {} did not exit after SIGKILL",
                            r->c.name);
      }
      r->version++;
    }
    snap = r->c;
  }
  m.persist(*r);
  if (stopped_something) m.emit("container-stopped", snap);
  return snap;
}

Result<Container> Engine::restart(const std::string& name, std::chrono::seconds timeout) {
  auto c = TRY(stop(name, timeout));
  return start(c.id);
}

Result<Container> Engine::kill(const std::string& name, int signal) {
  auto r = TRY(impl_->find(name));
  std::lock_guard lock(impl_->mu);
  if (r->c.state != State::kRunning)
    return make_error(ErrorCode::kConflict, "container {} is not running", r->c.name);
  impl_->signal_container(*r, signal);
  return r->c;
}

Result<void> Engine::remove(const std::string& name, bool force) {
  auto r = TRY(impl_->find(name));
  std::lock_guard action(r->action);
  return impl_->remove_locked(r, force);
}

Result<Container> Engine::wait(const std::string& name, std::chrono::milliseconds timeout,
                               std::stop_token stop) {
  Impl& m = *impl_;
  std::unique_lock lock(m.mu);
  Error e(ErrorCode::kNotFound, "");
  auto r = m.find_locked(name, &e);
  if (!r) {
    // Removed (--rm) just before the wait: its exit is still known by its full id.
    for (const auto& g : m.graveyard)
      if (g->c.id == name) r = g;
    if (!r) return std::unexpected(e);
  }
  if (!r->removed && (r->c.state == State::kRunning || r->c.state == State::kRestarting)) {
    uint64_t runs = r->runs_ended;
    if (!m.cv.wait_for(lock, stop, timeout, [&] { return r->runs_ended != runs; })) {
      if (stop.stop_requested())
        return make_error(ErrorCode::kCancelled, "wait for container {} cancelled", r->c.name);
      return make_error(ErrorCode::kTimeout, "container {} still running", r->c.name);
    }
  }
  return r->last_exit && r->c.state != State::kCreated ? *r->last_exit : r->c;
}

Result<LogPage> Engine::logs(const std::string& name, const LogQuery& q) {
  auto r = TRY(impl_->find(name));
  return read_logs(monitor_dir(*r), q);
}

}  // namespace vireo::containers
