#include <gtest/gtest.h>

#include "api/error_body.h"
#include "api/event.h"
#include "api/operation.h"
#include "api/server_info.h"

namespace vireo::api {
namespace {

TEST(ApiJsonTest, OperationRoundTrips) {
  Operation op{.id = "abc",
               .description = "Creating profile web",
               .status = OperationStatus::kFailure,
               .progress_percent = 40,
               .progress_stage = "copying",
               .may_cancel = true,
               .error = "disk full",
               .error_code = 500,
               .result = Json(nullptr),
               .resources = {{"profiles", {"/1.0/profiles/web"}}},
               .created_at = "t0",
               .updated_at = "t1"};
  Json j = to_json(op);
  EXPECT_EQ(j["status"], "failure");
  EXPECT_EQ(j["progress"]["percent"], 40);
  auto back = operation_from_json(j);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->status, OperationStatus::kFailure);
  EXPECT_EQ(back->error, "disk full");
  EXPECT_EQ(back->progress_stage, "copying");
  EXPECT_TRUE(back->done());
}

TEST(ApiJsonTest, OperationWithoutProgressOmitsIt) {
  Json j = to_json(Operation{.id = "x", .status = OperationStatus::kRunning});
  EXPECT_FALSE(j.contains("progress"));
  EXPECT_FALSE(j.contains("error"));
}

TEST(ApiJsonTest, MalformedOperationIsAnError) {
  EXPECT_FALSE(operation_from_json(Json::array()));
  EXPECT_FALSE(operation_from_json(Json{{"id", "x"}, {"status", "weird"}}));
  EXPECT_FALSE(operation_from_json(Json{{"status", "running"}}));
}

TEST(ApiJsonTest, ServerInfoRoundTrips) {
  ServerInfo info;
  info.version = "0.1.0";
  info.api_extensions = {"operations", "events"};
  info.host.kernel = "6.1";
  info.host.cgroup_mode = "hybrid";
  info.host.memory_bytes = 1ull << 34;
  auto back = server_info_from_json(to_json(info));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->host.cgroup_mode, "hybrid");
  EXPECT_EQ(back->host.memory_bytes, 1ull << 34);
  EXPECT_EQ(back->api_extensions.size(), 2u);
}

TEST(ApiJsonTest, ErrorCodesMapToHttpStatus) {
  EXPECT_EQ(http_status(ErrorCode::kInvalidArgument), 400);
  EXPECT_EQ(http_status(ErrorCode::kNotFound), 404);
  EXPECT_EQ(http_status(ErrorCode::kAlreadyExists), 409);
  EXPECT_EQ(http_status(ErrorCode::kPreconditionFailed), 412);
  EXPECT_EQ(http_status(ErrorCode::kTooLarge), 413);
  Json body = error_body(Error(ErrorCode::kNotFound, "profile 'x' not found"));
  EXPECT_EQ(body, (Json{{"error", "profile 'x' not found"}, {"code", 404}}));
  Error back = error_from_body(404, body);
  EXPECT_EQ(back.code(), ErrorCode::kNotFound);
  EXPECT_EQ(back.message(), "profile 'x' not found");
  EXPECT_EQ(error_from_body(502, Json()).message(), "server answered HTTP 502");
}

TEST(ApiJsonTest, EventRoundTrips) {
  Event e{"lifecycle", "t", lifecycle_metadata("profile-created", "/1.0/profiles/web")};
  auto back = event_from_json(to_json(e));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->metadata["action"], "profile-created");
  EXPECT_FALSE(event_from_json(Json{{"x", 1}}));
}

}  // namespace
}  // namespace vireo::api
