// The engine's watcher thread: monitor exits (epoll over pidfds), restart policies with back-off,
// --rm, and log followers (inotify on the monitors' directories).
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>

#include "base/file.h"
#include "base/log.h"
#include "base/subprocess.h"
#include "base/time.h"
#include "containers/engine_impl.h"

namespace vireo::containers {

namespace fs = std::filesystem;

namespace {

constexpr int kMaxEvents = 32;

void drain(int fd) {
  char buf[4096];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
}

}  // namespace

Result<void> Engine::Impl::start_watcher() {
  epoll = Fd(::epoll_create1(EPOLL_CLOEXEC));
  wake = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  inotify = Fd(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!epoll || !wake || !inotify) return errno_error("containers: watcher set-up");
  for (int fd : {wake.get(), inotify.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return errno_error("epoll_ctl");
  }
  watcher = std::thread([this] { run(); });
  return {};
}

void Engine::Impl::stop_watcher() {
  {
    std::lock_guard lock(mu);
    shutting_down = true;
  }
  notify();
  if (watcher.joinable()) watcher.join();
  std::lock_guard lock(mu);
  for (auto& [fd, r] : by_pidfd) {
    ::close(fd);
    r->monitor_pidfd = -1;
  }
  by_pidfd.clear();
  followers.clear();
}

void Engine::Impl::notify() {
  uint64_t one = 1;
  (void)!::write(wake.get(), &one, sizeof one);
}

void Engine::Impl::watch(const std::shared_ptr<Record>& r, Fd pidfd) {
  std::lock_guard lock(mu);
  if (!pidfd) {
    ended.push_back(r);
    notify();
    return;
  }
  int fd = pidfd.release();
  r->monitor_pidfd = fd;
  by_pidfd[fd] = r;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    spdlog::error("container {}: epoll_ctl: {}", r->c.name, std::strerror(errno));
    by_pidfd.erase(fd);
    ::close(fd);
    r->monitor_pidfd = -1;
    ended.push_back(r);
    notify();
  }
}

void Engine::Impl::run() {
  epoll_event events[kMaxEvents];
  for (;;) {
    int timeout_ms = -1;
    {
      std::lock_guard lock(mu);
      if (shutting_down) return;
      std::optional<Clock::time_point> next;
      for (const auto& [id, r] : by_id)
        if (r->restart_at && (!next || *r->restart_at < *next)) next = r->restart_at;
      for (const auto& f : followers)
        if (!next || f.deadline < *next) next = f.deadline;
      if (next) {
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(*next - Clock::now()).count();
        timeout_ms = static_cast<int>(std::clamp<int64_t>(ms, 0, 60000));
      }
    }
    int n = ::epoll_wait(epoll.get(), events, kMaxEvents, timeout_ms);
    if (n < 0 && errno != EINTR) {
      spdlog::error("containers: epoll_wait: {}", std::strerror(errno));
      return;
    }
    bool changed = false;
    std::vector<std::shared_ptr<Record>> ends;
    {
      std::lock_guard lock(mu);
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == wake.get()) {
          drain(fd);
        } else if (fd == inotify.get()) {
          drain(fd);
          changed = true;
        } else if (auto it = by_pidfd.find(fd); it != by_pidfd.end()) {
          ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, fd, nullptr);
          ::close(fd);
          it->second->monitor_pidfd = -1;
          ends.push_back(it->second);
          by_pidfd.erase(it);
        }
      }
      ends.insert(ends.end(), ended.begin(), ended.end());
      ended.clear();
    }
    for (const auto& r : ends) handle_end(r);
    if (!ends.empty()) changed = true;
    run_due_restarts();
    serve_followers(changed);
  }
}

// The monitor exited: the run ended, recorded in exit.json unless the monitor itself died.
void Engine::Impl::handle_end(const std::shared_ptr<Record>& r) {
  fs::path exit_path = fs::path(monitor_dir(*r)) / "exit.json";
  auto text = read_file(exit_path);
  auto exit = text ? parse_json(*text) : Result<Json>(std::unexpected(text.error()));
  bool recorded = exit && exit->is_object() && (*exit)["exit_code"].is_number_integer();
  if (!recorded) {
    // The container may live on without its monitor: it has nobody to log or reap it.
    (void)run_process({o.runtime, "--root", runtime_root.string(), "delete", "--force", r->c.id},
                      RunOptions{.timeout = std::chrono::seconds(10)});
  }
  Container snap;
  bool auto_remove = false;
  {
    std::lock_guard lock(mu);
    r->c.state = State::kExited;
    r->c.pid = 0;
    r->ctr_pidfd.reset();
    if (recorded) {
      r->c.exit_code = (*exit)["exit_code"].get<int>();
      r->c.oom_killed = exit->value("oom_killed", false);
      r->c.finished_at = exit->value("finished_at", now_timestamp());
      r->c.error.clear();
    } else {
      r->c.exit_code = 255;
      r->c.oom_killed = false;
      r->c.finished_at = now_timestamp();
      r->c.error = "vireo-monitor ended without recording the container's exit";
    }
    r->runs_ended++;
    r->last_exit = r->c;
    if (!r->removed &&
        should_restart(r->req.restart, *r->c.exit_code, r->c.restart_count, r->stopped)) {
      auto ran =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - r->run_started);
      r->restart_at = Clock::now() + r->backoff.delay_after(ran);
      r->c.state = State::kRestarting;
    }
    auto_remove = r->req.auto_remove && !r->removed;
    r->version++;
    snap = *r->last_exit;
    cv.notify_all();
  }
  persist(*r);
  emit("container-died", snap);
  if (snap.oom_killed) emit("container-oom", snap);
  if (auto_remove) {
    std::lock_guard action(r->action);
    if (auto rm = remove_locked(r, true); !rm)
      spdlog::warn("container {}: --rm: {}", snap.name, rm.error().message());
  }
}

void Engine::Impl::run_due_restarts() {
  std::vector<std::shared_ptr<Record>> due;
  {
    std::lock_guard lock(mu);
    auto now = Clock::now();
    for (const auto& [id, r] : by_id)
      if (r->restart_at && *r->restart_at <= now) due.push_back(r);
  }
  for (const auto& r : due) {
    std::lock_guard action(r->action);
    {
      std::lock_guard lock(mu);
      if (!r->restart_at || r->removed || r->stopped || r->c.state != State::kRestarting) continue;
      r->restart_at.reset();
      r->c.restart_count++;
    }
    auto started = start_locked(r);
    if (!started) {
      spdlog::warn("container {}: restart: {}", r->c.name, started.error().message());
      {
        std::lock_guard lock(mu);
        r->c.state = State::kExited;
        r->c.error = started.error().message();
        r->version++;
      }
      persist(*r);
      continue;
    }
    Container snap;
    {
      std::lock_guard lock(mu);
      snap = r->c;
    }
    emit("container-restarted", snap);
  }
}

void Engine::Impl::serve_followers(bool changed) {
  std::vector<Follower> check;
  {
    std::lock_guard lock(mu);
    auto now = Clock::now();
    for (auto it = followers.begin(); it != followers.end();) {
      if (changed || it->deadline <= now || shutting_down) {
        check.push_back(std::move(*it));
        it = followers.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& f : check) {
    auto page = read_logs(monitor_dir(*f.rec), f.q);
    bool running;
    {
      std::lock_guard lock(mu);
      running = !f.rec->removed &&
                (f.rec->c.state == State::kRunning || f.rec->c.state == State::kRestarting);
    }
    if (page && page->lines.empty() && running && Clock::now() < f.deadline) {
      std::lock_guard lock(mu);
      followers.push_back(std::move(f));
      continue;
    }
    {
      std::lock_guard lock(mu);
      if (--wd_refs[f.wd] == 0) {
        ::inotify_rm_watch(inotify.get(), f.wd);
        wd_refs.erase(f.wd);
      }
    }
    f.done(std::move(page), running);
  }
}

void Engine::follow_logs(const std::string& name, const LogQuery& q,
                         std::chrono::milliseconds timeout, FollowFn done) {
  Impl& m = *impl_;
  auto r = m.find(name);
  if (!r) return done(std::unexpected(r.error()), false);
  // Watch first, then read: a line written in between wakes the follower.
  int wd = ::inotify_add_watch(m.inotify.get(), monitor_dir(**r).c_str(),
                               IN_MODIFY | IN_CREATE | IN_MOVED_TO);
  auto page = read_logs(monitor_dir(**r), q);
  bool running;
  {
    std::lock_guard lock(m.mu);
    running = (*r)->c.state == State::kRunning || (*r)->c.state == State::kRestarting;
    if (page && page->lines.empty() && running && wd >= 0) {
      m.wd_refs[wd]++;
      m.followers.push_back(Impl::Follower{*r, q, Clock::now() + timeout, std::move(done), wd});
      m.notify();
      return;
    }
    if (wd >= 0 && m.wd_refs.find(wd) == m.wd_refs.end()) ::inotify_rm_watch(m.inotify.get(), wd);
  }
  done(std::move(page), running);
}

}  // namespace vireo::containers
