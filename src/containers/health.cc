// Health checks: one engine thread runs each running container's check when it is due (through
// the runtime's exec, bounded by the check's timeout), keeps the last results and the status,
// and reports status changes as events (container-healthy, container-unhealthy).
#include "base/log.h"
#include "base/time.h"
#include "containers/engine_impl.h"

namespace vireo::containers {

Json to_json(const Health& h) {
  Json log = Json::array();
  for (const auto& r : h.log)
    log.push_back(
        {{"start", r.start}, {"end", r.end}, {"exit_code", r.exit_code}, {"output", r.output}});
  return Json{{"status", h.status}, {"failing_streak", h.failing_streak}, {"log", log}};
}

void Engine::Impl::start_health() {
  health = std::thread([this] { run_health(); });
}

void Engine::Impl::stop_health() {
  {
    std::lock_guard lock(mu);
    shutting_down = true;
  }
  health_cv.notify_all();
  if (health.joinable()) health.join();
}

void Engine::Impl::reset_health(Record& r) {
  if (!r.req.health) return;
  r.c.health = Health{};
  r.health_due = Clock::now() + r.req.health->interval;
}

void Engine::Impl::run_health() {
  std::unique_lock lock(mu);
  while (!shutting_down) {
    std::shared_ptr<Record> due;
    auto next = Clock::now() + std::chrono::minutes(1);
    for (const auto& [id, r] : by_id) {
      if (!r->req.health || r->removed || r->c.state != State::kRunning || !r->c.health) continue;
      if (r->health_due < next) {
        next = r->health_due;
        due = r;
      }
    }
    if (due && next <= Clock::now()) {
      lock.unlock();
      check_health(due);
      lock.lock();
      continue;
    }
    health_cv.wait_until(lock, next);
  }
}

void Engine::Impl::check_health(const std::shared_ptr<Record>& r) {
  Container c;
  HealthCheck check;
  uint64_t run = 0;
  Clock::time_point started;
  {
    std::lock_guard lock(mu);
    c = r->c;
    check = *r->req.health;
    run = r->runs_ended;
    started = r->run_started;
    r->health_due = Clock::now() + check.interval;  // also when the check fails to run
  }
  HealthResult result{.start = now_timestamp()};
  auto out = exec_in(c, ExecRequest{.command = check.command}, check.timeout);
  result.end = now_timestamp();
  if (out) {
    result.exit_code = out->exit_code;
    result.output = out->out + out->err;
  } else {
    result.exit_code = -1;
    result.output = out.error().message();
  }
  if (result.output.size() > kHealthOutput) result.output.resize(kHealthOutput);

  std::string changed;
  Container snap;
  {
    std::lock_guard lock(mu);
    // The run this check was for ended meanwhile: its result means nothing for the next one.
    if (r->runs_ended != run || r->removed || !r->c.health) return;
    Health& h = *r->c.health;
    const std::string before = h.status;
    const bool in_start_period = Clock::now() - started < check.start_period;
    if (result.exit_code == 0) {
      h.failing_streak = 0;
      h.status = "healthy";
    } else if (!in_start_period && ++h.failing_streak >= check.retries) {
      h.status = "unhealthy";
    }
    h.log.push_back(std::move(result));
    if (h.log.size() > kHealthLog) h.log.erase(h.log.begin());
    if (h.status != before) changed = h.status;
    r->version++;
    snap = r->c;
  }
  persist(*r);
  if (!changed.empty()) {
    spdlog::info("container {} is {}", snap.name, changed);
    emit("container-" + changed, snap);
  }
}

}  // namespace vireo::containers
