#pragma once
// OperationManager runs long actions on their own threads and tracks them as operations
// (/1.0/operations): status, progress, result or error, cancellation. Every change is published
// as an "operation" event. Waiters are completed on the io thread.
//
// Thread-safe. Finished operations are kept for a while (kRetention) so clients can read the
// outcome, then forgotten.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "api/operation.h"
#include "server/events.h"
#include "server/http.h"

namespace vireo::server {

// What a running action sees of its operation.
class OperationContext {
 public:
  virtual ~OperationContext() = default;
  virtual void set_progress(int percent, std::string stage) = 0;
  virtual std::stop_token stop_token() const = 0;
  bool cancelled() const { return stop_token().stop_requested(); }
};

// The action: returns its result, or an error that fails the operation. An action that sees
// cancellation should undo what it did and return ErrorCode::kCancelled.
using OperationWork = std::function<Result<Json>(OperationContext&)>;

enum class Cancellable { kNo, kYes };

// The answer to a request that started an operation: 202, the operation, and its Location.
Response accepted(const api::Operation& op);

class OperationManager {
 public:
  static constexpr auto kRetention = std::chrono::minutes(10);

  OperationManager(boost::asio::io_context& io, EventHub& events) : io_(io), events_(events) {}
  ~OperationManager() { shutdown(); }

  // Starts work on a new thread; returns the operation as it is right after start.
  api::Operation start(std::string description, Json resources, Cancellable cancellable,
                       OperationWork work);

  std::optional<api::Operation> get(const std::string& id);
  std::vector<api::Operation> list();
  // Requests cancellation; errors: kNotFound, kConflict (not cancellable, or already done).
  Result<api::Operation> cancel(const std::string& id);

  // Calls done on the io thread when the operation finishes or timeout passes, whichever is
  // first, with the operation as it is then (nullopt when unknown).
  void wait_async(const std::string& id, std::chrono::milliseconds timeout,
                  std::function<void(std::optional<api::Operation>)> done);

  // Cancels every running operation and joins its thread.
  void shutdown();

 private:
  struct Waiter;
  struct Entry {
    api::Operation op;
    std::stop_source stop;
    std::thread thread;
    std::vector<std::shared_ptr<Waiter>> waiters;
    std::chrono::steady_clock::time_point finished_at;
  };
  class Context;

  void run(std::shared_ptr<Entry> entry, OperationWork work);
  void update(Entry& entry, const std::function<void(api::Operation&)>& change);
  void finish(std::shared_ptr<Entry> entry, Result<Json> outcome);
  void prune_locked();

  boost::asio::io_context& io_;
  EventHub& events_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;
};

}  // namespace vireo::server
