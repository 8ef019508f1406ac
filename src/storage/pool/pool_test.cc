#include "storage/pool/pool.h"

#include <filesystem>

#include <gtest/gtest.h>

namespace vireo::storage {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kMiB = 1 << 20;

class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vireo-pool-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::unique_ptr<Pool> make(PoolType type) {
    PoolConfig c{.name = "p", .type = type, .path = dir_ / "pool", .size = 64 * kMiB};
    auto created = Pool::create_storage(c);
    EXPECT_TRUE(created) << created.error().message();
    auto p = Pool::open(c);
    EXPECT_TRUE(p) << p.error().message();
    return p ? std::move(*p) : nullptr;
  }
  fs::path dir_;
};

TEST_F(PoolTest, DirPoolVolumesSnapshotsAndClones) {
  auto pool = make(PoolType::kDir);
  ASSERT_TRUE(pool->create_volume("r", 4 * kMiB, VolumeFormat::kRaw));
  ASSERT_TRUE(pool->create_volume("q", 8 * kMiB, VolumeFormat::kQcow2));
  EXPECT_EQ(pool->create_volume("r", kMiB, VolumeFormat::kRaw).error().code(),
            ErrorCode::kAlreadyExists);
  EXPECT_EQ(pool->create_volume("a/b", kMiB, VolumeFormat::kRaw).error().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(pool->create_volume("..", kMiB, VolumeFormat::kRaw).error().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(pool->create_volume("z", 1000, VolumeFormat::kRaw).error().code(),
            ErrorCode::kInvalidArgument);
  std::vector<uint8_t> data(65536, 0x42);
  {
    auto q = *pool->open_volume("q");
    ASSERT_TRUE(q->write(data, kMiB));
    ASSERT_TRUE(q->flush());
  }
  ASSERT_TRUE(pool->copy_volume("q", "qs", VolumeAccess::kReadOnly));
  ASSERT_TRUE(pool->copy_volume("r", "rc", VolumeAccess::kReadWrite));
  auto qs = *pool->open_volume("qs");
  EXPECT_TRUE(qs->read_only());
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(qs->read(back, kMiB));
  EXPECT_EQ(back, data);
  EXPECT_FALSE((*pool->open_volume("rc"))->read_only());
  EXPECT_EQ(pool->volume("qs")->origin, "q");
  EXPECT_EQ(pool->volume("q")->size, 8 * kMiB);
  EXPECT_EQ(pool->resize_volume("qs", 16 * kMiB).error().code(), ErrorCode::kConflict);
  ASSERT_TRUE(pool->resize_volume("r", 16 * kMiB));
  EXPECT_EQ(pool->volume("r")->size, 16 * kMiB);
  EXPECT_EQ(pool->volumes()->size(), 4u);
  EXPECT_TRUE(pool->check()->ok());
  ASSERT_TRUE(pool->remove_volume("qs"));
  EXPECT_EQ(pool->volume("qs").error().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(fs::exists(dir_ / "pool" / "qs.meta.json"));
}

TEST_F(PoolTest, DirPoolQcow2VolumeResize) {
  auto pool = make(PoolType::kDir);
  ASSERT_TRUE(pool->create_volume("q", 8 * kMiB, VolumeFormat::kQcow2));
  std::vector<uint8_t> data(65536, 0x42);
  auto dev = *pool->open_volume("q");
  ASSERT_TRUE(dev->write(data, 8 * kMiB - data.size()));
  // The open device is resized in place: it sees the new size and may write there at once.
  auto r = pool->resize_volume("q", 3 * 1024 * kMiB);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(pool->volume("q")->size, 3 * 1024 * kMiB);
  EXPECT_EQ(dev->size(), 3 * 1024 * kMiB);
  ASSERT_TRUE(dev->write(data, 3 * 1024 * kMiB - data.size()));
  EXPECT_EQ((*pool->open_volume("q")).get(), dev.get());
  ASSERT_TRUE(dev->flush());
  auto shrink = pool->resize_volume("q", kMiB);
  ASSERT_FALSE(shrink);
  EXPECT_NE(shrink.error().message().find("shrinking"), std::string::npos);
  EXPECT_EQ(pool->resize_volume("q", 3 * 1024 * kMiB + 100).error().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_TRUE(pool->check()->ok());
  dev.reset();
  // Without an open device the file is opened for the resize.
  ASSERT_TRUE(pool->resize_volume("q", 4 * 1024 * kMiB));
  EXPECT_EQ(pool->volume("q")->size, 4 * 1024 * kMiB);
  auto again = *pool->open_volume("q");
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(again->read(back, 8 * kMiB - data.size()));
  EXPECT_EQ(back, data);
  ASSERT_TRUE(again->read(back, 3 * 1024 * kMiB - data.size()));
  EXPECT_EQ(back, data);
  ASSERT_TRUE(again->read(back, 4 * 1024 * kMiB - data.size()));
  EXPECT_EQ(back, std::vector<uint8_t>(data.size(), 0));
  EXPECT_TRUE(pool->check()->ok());
  // Snapshots stay read-only and cannot be resized.
  ASSERT_TRUE(pool->copy_volume("q", "qs", VolumeAccess::kReadOnly));
  EXPECT_EQ(pool->resize_volume("qs", 8 * 1024 * kMiB).error().code(), ErrorCode::kConflict);
}

TEST_F(PoolTest, ThinPoolThroughTheInterface) {
  auto pool = make(PoolType::kThin);
  EXPECT_EQ(pool->create_volume("v", kMiB, VolumeFormat::kQcow2).error().code(),
            ErrorCode::kInvalidArgument);
  ASSERT_TRUE(pool->create_volume("v", 4 * kMiB, VolumeFormat::kRaw));
  ASSERT_TRUE(pool->copy_volume("v", "s", VolumeAccess::kReadOnly));
  auto u = *pool->usage();
  EXPECT_EQ(u.volumes, 2u);
  EXPECT_EQ(u.virtual_bytes, 8 * kMiB);
  EXPECT_TRUE(pool->check()->ok());
}

TEST_F(PoolTest, ConfigFromJsonValidates) {
  EXPECT_TRUE(pool_config_from_json(
      Json{{"name", "p"}, {"type", "thin"}, {"path", "/x"}, {"size", "10G"}}));
  EXPECT_FALSE(pool_config_from_json(Json{{"name", "p"}, {"type", "lvm"}, {"path", "/x"}}));
  EXPECT_FALSE(pool_config_from_json(Json{{"name", "p"}, {"type", "dir"}, {"path", "x"}}));
  EXPECT_FALSE(pool_config_from_json(Json{{"name", "../p"}, {"type", "dir"}, {"path", "/x"}}));
  EXPECT_FALSE(
      pool_config_from_json(Json{{"name", "p"}, {"type", "dir"}, {"path", "/x"}, {"size", true}}));
  EXPECT_FALSE(pool_config_from_json(Json::array()));
}

}  // namespace
}  // namespace vireo::storage
