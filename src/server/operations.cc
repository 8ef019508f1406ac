#include "server/operations.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "api/error_body.h"
#include "base/ids.h"
#include "base/time.h"

namespace vireo::server {

struct OperationManager::Waiter {
  std::function<void(std::optional<api::Operation>)> done;
  std::unique_ptr<boost::asio::steady_timer> timer;
  bool fired = false;  // io thread only
};

class OperationManager::Context : public OperationContext {
 public:
  Context(OperationManager& mgr, std::shared_ptr<Entry> entry, std::stop_token token)
      : mgr_(mgr), entry_(std::move(entry)), token_(std::move(token)) {}
  void set_progress(int percent, std::string stage) override {
    mgr_.update(*entry_, [&](api::Operation& op) {
      op.progress_percent = std::clamp(percent, 0, 100);
      op.progress_stage = std::move(stage);
    });
  }
  std::stop_token stop_token() const override { return token_; }

 private:
  OperationManager& mgr_;
  std::shared_ptr<Entry> entry_;
  std::stop_token token_;
};

Response accepted(const api::Operation& op) {
  Response r = Response::json(api::to_json(op), 202);
  r.header("Location", "/1.0/operations/" + op.id);
  return r;
}

api::Operation OperationManager::start(std::string description, Json resources,
                                       Cancellable cancellable, OperationWork work) {
  auto entry = std::make_shared<Entry>();
  const std::string now = now_timestamp();
  entry->op = api::Operation{.id = random_uuid(),
                             .description = std::move(description),
                             .status = api::OperationStatus::kRunning,
                             .may_cancel = cancellable == Cancellable::kYes,
                             .resources = std::move(resources),
                             .created_at = now,
                             .updated_at = now};
  api::Operation snapshot;
  {
    std::lock_guard lock(mu_);
    prune_locked();
    entries_[entry->op.id] = entry;
    snapshot = entry->op;
    entry->thread = std::thread(
        [this, entry, work = std::move(work)]() mutable { run(entry, std::move(work)); });
  }
  events_.publish("operation", api::to_json(snapshot));
  return snapshot;
}

void OperationManager::run(std::shared_ptr<Entry> entry, OperationWork work) {
  Context ctx(*this, entry, entry->stop.get_token());
  Result<Json> outcome = work(ctx);
  finish(std::move(entry), std::move(outcome));
}

void OperationManager::update(Entry& entry, const std::function<void(api::Operation&)>& change) {
  api::Operation snapshot;
  {
    std::lock_guard lock(mu_);
    change(entry.op);
    entry.op.updated_at = now_timestamp();
    snapshot = entry.op;
  }
  events_.publish("operation", api::to_json(snapshot));
}

void OperationManager::finish(std::shared_ptr<Entry> entry, Result<Json> outcome) {
  api::Operation snapshot;
  std::vector<std::shared_ptr<Waiter>> waiters;
  {
    std::lock_guard lock(mu_);
    api::Operation& op = entry->op;
    if (outcome) {
      op.status = api::OperationStatus::kSuccess;
      op.result = std::move(*outcome);
      if (op.progress_percent >= 0) op.progress_percent = 100;
    } else if (outcome.error().code() == ErrorCode::kCancelled) {
      op.status = api::OperationStatus::kCancelled;
      op.error = outcome.error().message();
      op.error_code = api::http_status(outcome.error().code());
    } else {
      op.status = api::OperationStatus::kFailure;
      op.error = outcome.error().message();
      op.error_code = api::http_status(outcome.error().code());
    }
    op.may_cancel = false;
    op.updated_at = now_timestamp();
    entry->finished_at = std::chrono::steady_clock::now();
    snapshot = op;
    waiters.swap(entry->waiters);
  }
  events_.publish("operation", api::to_json(snapshot));
  boost::asio::post(io_, [waiters = std::move(waiters), snapshot] {
    for (const auto& w : waiters) {
      if (w->fired) continue;
      w->fired = true;
      w->timer->cancel();
      w->done(snapshot);
    }
  });
}

std::optional<api::Operation> OperationManager::get(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return std::nullopt;
  return it->second->op;
}

std::vector<api::Operation> OperationManager::list() {
  std::lock_guard lock(mu_);
  prune_locked();
  std::vector<api::Operation> out;
  for (const auto& [id, entry] : entries_) out.push_back(entry->op);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.created_at < b.created_at; });
  return out;
}

Result<api::Operation> OperationManager::cancel(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return make_error(ErrorCode::kNotFound, "operation {} not found", id);
  Entry& entry = *it->second;
  if (entry.op.done())
    return make_error(ErrorCode::kConflict, "operation {} has already finished ({})", id,
                      api::to_string(entry.op.status));
  if (!entry.op.may_cancel)
    return make_error(ErrorCode::kConflict, "operation {} ({}) cannot be cancelled", id,
                      entry.op.description);
  entry.stop.request_stop();
  return entry.op;
}

void OperationManager::wait_async(const std::string& id, std::chrono::milliseconds timeout,
                                  std::function<void(std::optional<api::Operation>)> done) {
  auto waiter = std::make_shared<Waiter>();
  waiter->done = std::move(done);
  std::shared_ptr<Entry> entry;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it != entries_.end() && !it->second->op.done()) {
      entry = it->second;
      waiter->timer = std::make_unique<boost::asio::steady_timer>(io_, timeout);
      entry->waiters.push_back(waiter);
    }
  }
  if (!entry) {
    boost::asio::post(io_, [this, id, waiter] { waiter->done(get(id)); });
    return;
  }
  waiter->timer->async_wait([this, waiter, entry, id](const boost::system::error_code& ec) {
    if (ec || waiter->fired) return;
    waiter->fired = true;
    std::optional<api::Operation> now;
    {
      std::lock_guard lock(mu_);
      std::erase(entry->waiters, waiter);
      now = entry->op;
    }
    waiter->done(std::move(now));
  });
}

void OperationManager::shutdown() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, entry] : entries_) {
      entry->stop.request_stop();
      if (entry->thread.joinable()) threads.push_back(std::move(entry->thread));
    }
  }
  for (auto& t : threads) t.join();
}

void OperationManager::prune_locked() {
  const auto now = std::chrono::steady_clock::now();
  std::erase_if(entries_, [&](auto& kv) {
    Entry& e = *kv.second;
    if (!e.op.done() || now - e.finished_at < kRetention) return false;
    if (e.thread.joinable()) e.thread.join();  // finished: returns at once
    return true;
  });
}

}  // namespace vireo::server
