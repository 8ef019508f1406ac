#include "server/operations.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <latch>

#include "server/test_io.h"

namespace vireo::server {
namespace {

using namespace std::chrono_literals;

// Collects events delivered by the hub, for assertions.
class Recorder : public EventSubscriber {
 public:
  const std::set<std::string>& event_types() const override { return types_; }
  void deliver(std::shared_ptr<const std::string> frame) override {
    std::lock_guard lock(mu_);
    frames_.push_back(*frame);
    cv_.notify_all();
  }
  // Waits until a frame containing needle arrives (bounded).
  bool wait_for(const std::string& needle) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 5s, [&] {
      for (const auto& f : frames_)
        if (f.find(needle) != std::string::npos) return true;
      return false;
    });
  }

 private:
  std::set<std::string> types_{"operation"};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> frames_;
};

class OperationsTest : public ::testing::Test {
 protected:
  TestIo io_;
  EventHub events_{io_.io};
  OperationManager ops_{io_.io, events_};

  api::Operation wait(const std::string& id, std::chrono::milliseconds timeout = 5s) {
    std::promise<std::optional<api::Operation>> result;
    io_.sync([&] { ops_.wait_async(id, timeout, [&](auto op) { result.set_value(op); }); });
    auto op = result.get_future().get();
    EXPECT_TRUE(op.has_value());
    return op.value_or(api::Operation{});
  }
};

TEST_F(OperationsTest, SuccessCarriesResult) {
  auto op =
      ops_.start("add", Json::object(), Cancellable::kNo, [](OperationContext&) -> Result<Json> {
        return Json{{"sum", 3}};
      });
  EXPECT_FALSE(op.may_cancel);
  auto done = wait(op.id);
  EXPECT_EQ(done.status, api::OperationStatus::kSuccess);
  EXPECT_EQ(done.result["sum"], 3);
}

TEST_F(OperationsTest, FailureCarriesErrorAndStatus) {
  auto op = ops_.start(
      "fail", Json::object(), Cancellable::kNo,
      [](OperationContext&) -> Result<Json> { return make_error(ErrorCode::kNotFound, "gone"); });
  auto done = wait(op.id);
  EXPECT_EQ(done.status, api::OperationStatus::kFailure);
  EXPECT_EQ(done.error, "gone");
  EXPECT_EQ(done.error_code, 404);
}

TEST_F(OperationsTest, CancelStopsTheWork) {
  std::latch started(1);
  auto op = ops_.start("long", Json::object(), Cancellable::kYes,
                       [&](OperationContext& ctx) -> Result<Json> {
                         started.count_down();
                         std::mutex m;
                         std::condition_variable_any cv;
                         std::unique_lock lock(m);
                         cv.wait(lock, ctx.stop_token(), [] { return false; });
                         return make_error(ErrorCode::kCancelled, "stopped");
                       });
  started.wait();
  ASSERT_TRUE(ops_.cancel(op.id));
  auto done = wait(op.id);
  EXPECT_EQ(done.status, api::OperationStatus::kCancelled);
  auto again = ops_.cancel(op.id);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kConflict);
}

TEST_F(OperationsTest, NotCancellableIsRefused) {
  std::promise<void> release;
  auto gate = release.get_future().share();
  auto op = ops_.start("fixed", Json::object(), Cancellable::kNo,
                       [gate](OperationContext&) -> Result<Json> {
                         gate.wait();
                         return Json();
                       });
  auto r = ops_.cancel(op.id);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("cannot be cancelled"), std::string::npos);
  release.set_value();
  EXPECT_EQ(wait(op.id).status, api::OperationStatus::kSuccess);
}

TEST_F(OperationsTest, WaitTimesOutWithCurrentState) {
  std::promise<void> release;
  auto gate = release.get_future().share();
  auto op = ops_.start("slow", Json::object(), Cancellable::kNo,
                       [gate](OperationContext&) -> Result<Json> {
                         gate.wait();
                         return Json();
                       });
  auto now = wait(op.id, 50ms);
  EXPECT_EQ(now.status, api::OperationStatus::kRunning);
  release.set_value();
  EXPECT_EQ(wait(op.id).status, api::OperationStatus::kSuccess);
}

TEST_F(OperationsTest, UnknownOperation) {
  EXPECT_FALSE(ops_.get("nope"));
  EXPECT_EQ(ops_.cancel("nope").error().code(), ErrorCode::kNotFound);
  std::promise<std::optional<api::Operation>> result;
  io_.sync([&] { ops_.wait_async("nope", 1s, [&](auto op) { result.set_value(op); }); });
  EXPECT_FALSE(result.get_future().get().has_value());
}

TEST_F(OperationsTest, ProgressIsPublishedAsEvents) {
  auto recorder = std::make_shared<Recorder>();
  io_.sync([&] { events_.subscribe(recorder); });
  auto op = ops_.start("progress", Json::object(), Cancellable::kNo,
                       [](OperationContext& ctx) -> Result<Json> {
                         ctx.set_progress(42, "halfway");
                         return Json();
                       });
  EXPECT_TRUE(recorder->wait_for("\"stage\":\"halfway\""));
  EXPECT_TRUE(recorder->wait_for("\"status\":\"success\""));
  EXPECT_EQ(wait(op.id).progress_percent, 100);
  EXPECT_EQ(ops_.list().size(), 1u);
}

}  // namespace
}  // namespace vireo::server
