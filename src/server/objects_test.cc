#include "server/objects.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>

#include "base/ids.h"
#include "server/test_io.h"

namespace vireo::server {
namespace {

using namespace std::chrono_literals;

// A kind whose create can be told to fail, recording what the machinery asked of it.
struct FakeWorld {
  std::set<std::string> live;  // objects "brought into being"
  std::vector<std::string> abandoned;
  bool fail_create = false;
  bool fail_remove = false;
};

ObjectKind fake_kind(FakeWorld& world, bool async) {
  return ObjectKind{
      .collection = "widgets",
      .noun = "widget",
      .validate = [](const Json& spec) -> Result<Json> {
        Json out = {{"size", 1}};
        for (const auto& [k, v] : spec.items()) {
          if (k != "size") return make_error(ErrorCode::kInvalidArgument, "unknown field '{}'", k);
          if (!v.is_number_integer() || v.get<int>() < 1)
            return make_error(ErrorCode::kInvalidArgument,
                              "field 'size' must be a positive integer");
          out["size"] = v;
        }
        return out;
      },
      .create = [&world](const store::ObjectRow& row, OperationContext*) -> Result<void> {
        if (world.fail_create) return make_error(ErrorCode::kIo, "device exploded");
        world.live.insert(row.name);
        return {};
      },
      .remove = [&world](const store::ObjectRow& row) -> Result<void> {
        if (world.fail_remove) return make_error(ErrorCode::kConflict, "widget is busy");
        world.live.erase(row.name);
        return {};
      },
      .abandon = [&world](const store::ObjectRow& row) { world.abandoned.push_back(row.name); },
      .state =
          [&world](const store::ObjectRow& row) {
            return Json{{"live", world.live.contains(row.name)}};
          },
      .async_create = async};
}

class ObjectsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("vireo-objects-" + random_hex(6));
    std::filesystem::create_directories(dir_);
    store_ = std::move(*store::Store::open(dir_ / "db"));
    service_ = std::make_unique<ObjectService>(*store_, events_, ops_);
  }
  void TearDown() override {
    ops_.shutdown();
    std::filesystem::remove_all(dir_);
  }
  void use(bool async) { service_->register_kind(fake_kind(world_, async), router_); }

  Response call(Method method, const std::string& path, const std::string& body = {},
                const std::string& if_match = {}) {
    Request req;
    req.method = method;
    req.path = path;
    req.body = body;
    req.if_match = if_match;
    std::promise<Response> answer;
    io_.sync([&] { router_.dispatch(req, [&](Response r) { answer.set_value(std::move(r)); }); });
    return answer.get_future().get();
  }
  std::string etag_of(const Response& r) {
    for (const auto& [k, v] : r.headers)
      if (k == "ETag") return v;
    return {};
  }

  std::filesystem::path dir_;
  FakeWorld world_;
  TestIo io_;
  EventHub events_{io_.io};
  OperationManager ops_{io_.io, events_};
  Router router_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<ObjectService> service_;
};

TEST_F(ObjectsTest, CreateGetListDelete) {
  use(false);
  auto created = call(Method::kPost, "/1.0/widgets", R"({"name": "w1", "size": 3})");
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.body["size"], 3);
  EXPECT_EQ(created.body["status"], "ready");
  EXPECT_EQ(created.body["state"]["live"], true);
  EXPECT_FALSE(etag_of(created).empty());
  EXPECT_EQ(call(Method::kGet, "/1.0/widgets/w1").body["size"], 3);
  EXPECT_EQ(call(Method::kGet, "/1.0/widgets").body.size(), 1u);
  EXPECT_EQ(call(Method::kDelete, "/1.0/widgets/w1").status, 200);
  EXPECT_FALSE(world_.live.contains("w1"));
  auto gone = call(Method::kGet, "/1.0/widgets/w1");
  EXPECT_EQ(gone.status, 404);
  EXPECT_EQ(gone.body["error"], "widget 'w1' not found");
}

TEST_F(ObjectsTest, InvalidInputIsRejectedAndNothingStored) {
  use(false);
  EXPECT_EQ(call(Method::kPost, "/1.0/widgets", R"({"size": 3})").body["error"],
            "field 'name' is required (a string)");
  EXPECT_EQ(call(Method::kPost, "/1.0/widgets", R"({"name": "../x"})").status, 400);
  EXPECT_EQ(call(Method::kPost, "/1.0/widgets", R"({"name": "w", "size": -1})").body["error"],
            "field 'size' must be a positive integer");
  EXPECT_EQ(call(Method::kPost, "/1.0/widgets", R"([1,2])").status, 400);
  EXPECT_EQ(call(Method::kPost, "/1.0/widgets", R"({"name": )").status, 400);
  EXPECT_EQ(call(Method::kGet, "/1.0/widgets").body.size(), 0u);
  EXPECT_TRUE(world_.live.empty());
}

TEST_F(ObjectsTest, DuplicateNameIsConflict) {
  use(false);
  ASSERT_EQ(call(Method::kPost, "/1.0/widgets", R"({"name": "w1"})").status, 201);
  auto dup = call(Method::kPost, "/1.0/widgets", R"({"name": "w1"})");
  EXPECT_EQ(dup.status, 409);
  EXPECT_EQ(dup.body["error"], "widget 'w1' already exists");
}

TEST_F(ObjectsTest, FailedCreateRollsBack) {
  use(false);
  world_.fail_create = true;
  auto r = call(Method::kPost, "/1.0/widgets", R"({"name": "w1"})");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body["error"], "device exploded");
  EXPECT_EQ(call(Method::kGet, "/1.0/widgets/w1").status, 404);
  world_.fail_create = false;
  EXPECT_EQ(call(Method::kPost, "/1.0/widgets", R"({"name": "w1"})").status, 201);
}

TEST_F(ObjectsTest, PatchMergesAndChecksEtag) {
  use(false);
  auto created = call(Method::kPost, "/1.0/widgets", R"({"name": "w1", "size": 2})");
  const std::string etag = etag_of(created);
  auto patched = call(Method::kPatch, "/1.0/widgets/w1", R"({"size": 5})", etag);
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(patched.body["size"], 5);
  EXPECT_NE(etag_of(patched), etag);
  auto stale = call(Method::kPatch, "/1.0/widgets/w1", R"({"size": 7})", etag);
  EXPECT_EQ(stale.status, 412);
  EXPECT_EQ(stale.body["code"], 412);
  EXPECT_EQ(call(Method::kGet, "/1.0/widgets/w1").body["size"], 5);
  EXPECT_EQ(call(Method::kDelete, "/1.0/widgets/w1", "", etag).status, 412);
  EXPECT_EQ(call(Method::kPatch, "/1.0/widgets/w1", R"({"name": "w2"})").status, 400);
  EXPECT_EQ(call(Method::kPatch, "/1.0/widgets/w1", R"({"size": "big"})").status, 400);
}

TEST_F(ObjectsTest, PutReplacesSpec) {
  use(false);
  call(Method::kPost, "/1.0/widgets", R"({"name": "w1", "size": 4})");
  auto r = call(Method::kPut, "/1.0/widgets/w1", R"({"name": "w1", "status": "ignored"})");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body["size"], 1);  // back to the default
}

TEST_F(ObjectsTest, FailedRemoveKeepsObject) {
  use(false);
  call(Method::kPost, "/1.0/widgets", R"({"name": "w1"})");
  world_.fail_remove = true;
  EXPECT_EQ(call(Method::kDelete, "/1.0/widgets/w1").status, 409);
  EXPECT_EQ(call(Method::kGet, "/1.0/widgets/w1").status, 200);
}

TEST_F(ObjectsTest, AsyncCreateRunsAsOperation) {
  use(true);
  auto r = call(Method::kPost, "/1.0/widgets", R"({"name": "w1"})");
  ASSERT_EQ(r.status, 202) << r.body;
  const std::string id = r.body["id"];
  std::promise<std::optional<api::Operation>> done;
  io_.sync([&] { ops_.wait_async(id, 5s, [&](auto op) { done.set_value(op); }); });
  auto op = done.get_future().get();
  ASSERT_TRUE(op);
  EXPECT_EQ(op->status, api::OperationStatus::kSuccess);
  EXPECT_EQ(op->result["name"], "w1");
  EXPECT_EQ(call(Method::kGet, "/1.0/widgets/w1").body["status"], "ready");
}

TEST_F(ObjectsTest, AsyncCreateFailureRollsBack) {
  use(true);
  world_.fail_create = true;
  auto r = call(Method::kPost, "/1.0/widgets", R"({"name": "w1"})");
  ASSERT_EQ(r.status, 202);
  std::promise<std::optional<api::Operation>> done;
  io_.sync([&] { ops_.wait_async(r.body["id"], 5s, [&](auto op) { done.set_value(op); }); });
  auto op = done.get_future().get();
  EXPECT_EQ(op->status, api::OperationStatus::kFailure);
  EXPECT_EQ(op->error, "device exploded");
  EXPECT_EQ(call(Method::kGet, "/1.0/widgets/w1").status, 404);
}

TEST_F(ObjectsTest, RecoverRollsBackInterruptedCreates) {
  use(false);
  ASSERT_TRUE(store_->insert_object("widgets", "half", Json::object(), "creating"));
  ASSERT_TRUE(store_->insert_object("widgets", "whole", Json::object(), "ready"));
  ASSERT_TRUE(service_->recover());
  EXPECT_EQ(world_.abandoned, std::vector<std::string>{"half"});
  EXPECT_EQ(call(Method::kGet, "/1.0/widgets/half").status, 404);
  EXPECT_EQ(call(Method::kGet, "/1.0/widgets/whole").status, 200);
}

}  // namespace
}  // namespace vireo::server
