#include "store/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <thread>

#include "base/ids.h"

namespace vireo::store {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("vireo-store-" + random_hex(6));
    std::filesystem::create_directories(dir_);
    path_ = dir_ / "vireo.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<Store> open() {
    auto s = Store::open(path_);
    EXPECT_TRUE(s) << s.error().message();
    return s ? std::move(*s) : nullptr;
  }
  std::filesystem::path dir_, path_;
};

TEST_F(StoreTest, NewDatabaseIsAtLatestSchemaInWalMode) {
  auto store = open();
  EXPECT_EQ(store->schema_version(), static_cast<int>(migrations().size()));
  store.reset();
  EXPECT_TRUE(std::filesystem::exists(path_));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_F(StoreTest, OldSchemaIsMigratedAndKeepsData) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db, "CREATE TABLE unrelated (x INTEGER); INSERT INTO unrelated VALUES (7)",
                     nullptr, nullptr, nullptr),
        SQLITE_OK);
    sqlite3_close(db);
  }
  auto store = open();
  EXPECT_EQ(store->schema_version(), static_cast<int>(migrations().size()));
  EXPECT_TRUE(store->insert_object("profile", "a", Json::object(), "ready"));
}

TEST_F(StoreTest, NewerSchemaIsRefused) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    sqlite3_exec(db, "PRAGMA user_version = 999", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  auto s = Store::open(path_);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("schema version 999 is newer"), std::string::npos)
      << s.error().message();
}

TEST_F(StoreTest, ObjectsRoundTripAcrossReopen) {
  {
    auto store = open();
    ASSERT_TRUE(store->insert_object("profile", "web", Json{{"description", "x"}}, "ready"));
  }
  auto store = open();
  auto row = store->get_object("profile", "web");
  ASSERT_TRUE(row);
  EXPECT_EQ(row->spec["description"], "x");
  EXPECT_EQ(row->revision, 1);
  EXPECT_EQ(row->status, "ready");
}

TEST_F(StoreTest, DuplicateNameIsAlreadyExists) {
  auto store = open();
  ASSERT_TRUE(store->insert_object("profile", "web", Json::object(), "ready"));
  auto dup = store->insert_object("profile", "web", Json::object(), "ready");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(dup.error().message(), "profile 'web' already exists");
  EXPECT_TRUE(store->insert_object("network", "web", Json::object(), "ready"));
}

TEST_F(StoreTest, UpdateChecksRevision) {
  auto store = open();
  ASSERT_TRUE(store->insert_object("profile", "web", Json::object(), "ready"));
  auto updated = store->update_object("profile", "web", Json{{"a", 1}}, "ready", 1);
  ASSERT_TRUE(updated);
  EXPECT_EQ(updated->revision, 2);
  auto stale = store->update_object("profile", "web", Json{{"a", 2}}, "ready", 1);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code(), ErrorCode::kPreconditionFailed);
  EXPECT_EQ(store->get_object("profile", "web")->spec["a"], 1);
  EXPECT_EQ(store->update_object("profile", "nope", Json{}, "ready", {}).error().code(),
            ErrorCode::kNotFound);
}

TEST_F(StoreTest, DeleteChecksRevisionAndExistence) {
  auto store = open();
  ASSERT_TRUE(store->insert_object("profile", "web", Json::object(), "ready"));
  EXPECT_EQ(store->delete_object("profile", "web", 5).error().code(),
            ErrorCode::kPreconditionFailed);
  EXPECT_TRUE(store->delete_object("profile", "web", 1));
  EXPECT_EQ(store->delete_object("profile", "web").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(store->get_object("profile", "web").error().code(), ErrorCode::kNotFound);
}

TEST_F(StoreTest, TokensAreFoundByHash) {
  auto store = open();
  ASSERT_TRUE(store->add_token("ci", "abc"));
  EXPECT_TRUE(*store->token_hash_known("abc"));
  EXPECT_FALSE(*store->token_hash_known("abd"));
  EXPECT_EQ(store->add_token("ci", "def").error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(store->list_tokens()->size(), 1u);
  EXPECT_TRUE(store->delete_token("ci"));
  EXPECT_FALSE(*store->token_hash_known("abc"));
}

TEST_F(StoreTest, ConcurrentWritersAllLand) {
  auto store = open();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i)
        ASSERT_TRUE(
            store->insert_object("profile", fmt::format("p{}-{}", t, i), Json::object(), "ready"));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(store->list_objects("profile")->size(), 100u);
}

}  // namespace
}  // namespace vireo::store
