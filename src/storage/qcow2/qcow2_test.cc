#include "storage/qcow2/qcow2.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <thread>

#include "base/ids.h"
#include "storage/io.h"

namespace vireo::storage {
namespace {

namespace fs = std::filesystem;

class Qcow2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vireo-qcow2-" + random_hex(6));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<Qcow2> make(const Qcow2CreateOptions& o, const std::string& name = "a.qcow2") {
    auto created = Qcow2::create(dir_ / name, o);
    EXPECT_TRUE(created) << created.error().message();
    auto q = Qcow2::open(dir_ / name);
    EXPECT_TRUE(q) << q.error().message();
    return q ? std::move(*q) : nullptr;
  }
  static void expect_clean(Qcow2& q) {
    auto r = q.check();
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_TRUE(r->ok()) << (r->messages.empty() ? "" : r->messages.front());
  }
  static std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = uint8_t(seed + i * 7 + i / 4096);
    return v;
  }
  void corrupt_at(uint64_t offset, std::vector<uint8_t> bytes, const std::string& name) {
    int fd = ::open((dir_ / name).c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(pwrite_full(fd, bytes, offset));
    ::close(fd);
  }

  fs::path dir_;
};

TEST_F(Qcow2Test, FreshImageReadsZeroes) {
  auto q = make({.size = 10 << 20});
  ASSERT_TRUE(q);
  EXPECT_EQ(q->size(), 10u << 20);
  std::vector<uint8_t> buf(8192, 0xff);
  ASSERT_TRUE(q->read(buf, 4 << 20));
  EXPECT_EQ(buf, std::vector<uint8_t>(8192, 0));
  expect_clean(*q);
}

TEST_F(Qcow2Test, WriteThenReadBackAcrossClusters) {
  auto q = make({.size = 10 << 20, .cluster_size = 4096});
  auto data = pattern(3 * 4096 + 100, 1);
  ASSERT_TRUE(q->write(data, 4096 - 50));
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(q->read(back, 4096 - 50));
  EXPECT_EQ(back, data);
  std::vector<uint8_t> head(4096 - 50);
  ASSERT_TRUE(q->read(head, 0));
  EXPECT_EQ(head, std::vector<uint8_t>(head.size(), 0));
  expect_clean(*q);
}

TEST_F(Qcow2Test, RejectsOutOfRangeAndReadOnlyWrites) {
  auto q = make({.size = 1 << 20});
  std::vector<uint8_t> buf(4096);
  EXPECT_FALSE(q->read(buf, (1 << 20) - 100));
  EXPECT_FALSE(q->write(buf, UINT64_MAX - 10));
  q.reset();
  auto ro = Qcow2::open(dir_ / "a.qcow2", {.mode = OpenMode::kReadOnly});
  ASSERT_TRUE(ro);
  EXPECT_EQ((*ro)->write(buf, 0).error().code(), ErrorCode::kPermissionDenied);
}

// Random writes, trims and zeroes against an in-memory model, for every refcount width.
class Qcow2ModelTest
    : public Qcow2Test,
      public ::testing::WithParamInterface<std::tuple<uint32_t, uint32_t, uint32_t>> {};

TEST_P(Qcow2ModelTest, RandomOperationsMatchModelAndStayConsistent) {
  auto [cluster, refbits, version] = GetParam();
  const uint64_t size = 64 * uint64_t(cluster) + 1536;  // whole sectors, as qemu-img
  auto q =
      make({.size = size, .cluster_size = cluster, .version = version, .refcount_bits = refbits});
  ASSERT_TRUE(q);
  std::vector<uint8_t> model(size, 0);
  std::mt19937_64 rng(cluster * 131 + refbits);
  for (int op = 0; op < 300; ++op) {
    uint64_t off = rng() % size;
    uint64_t len = std::min<uint64_t>(1 + rng() % (3 * cluster), size - off);
    switch (rng() % 5) {
      case 0:
      case 1: {
        auto data = pattern(len, uint8_t(op));
        ASSERT_TRUE(q->write(data, off));
        std::copy(data.begin(), data.end(), model.begin() + off);
        break;
      }
      case 2: {
        auto r = q->write_zeroes(len, off, ZeroMode::kMayTrim, ZeroSpeed::kAny);
        ASSERT_TRUE(r) << r.error().message();
        std::fill_n(model.begin() + off, len, 0);
        break;
      }
      case 3: {
        // Without a backing file a trimmed cluster reads as zeroes.
        ASSERT_TRUE(q->trim(len, off));
        uint64_t first = (off + cluster - 1) / cluster * cluster;
        uint64_t end = off + len == size ? size : (off + len) / cluster * cluster;
        if (end > first) std::fill(model.begin() + first, model.begin() + end, 0);
        break;
      }
      default: {
        std::vector<uint8_t> back(len);
        ASSERT_TRUE(q->read(back, off));
        ASSERT_TRUE(std::equal(back.begin(), back.end(), model.begin() + off)) << "op " << op;
      }
    }
  }
  std::vector<uint8_t> all(size);
  ASSERT_TRUE(q->read(all, 0));
  EXPECT_EQ(all, model);
  expect_clean(*q);
  q.reset();
  auto again = Qcow2::open(dir_ / "a.qcow2");
  ASSERT_TRUE(again);
  ASSERT_TRUE((*again)->read(all, 0));
  EXPECT_EQ(all, model);
}

INSTANTIATE_TEST_SUITE_P(Widths, Qcow2ModelTest,
                         ::testing::Values(std::tuple{4096u, 1u, 3u}, std::tuple{4096u, 2u, 3u},
                                           std::tuple{4096u, 4u, 3u}, std::tuple{4096u, 8u, 3u},
                                           std::tuple{4096u, 16u, 2u}, std::tuple{65536u, 32u, 3u},
                                           std::tuple{512u, 64u, 3u},
                                           std::tuple{2u << 20, 16u, 3u}));

// Grows a small image past what its L1 table maps; data, check() and a reopen stay right.
class Qcow2GrowTest : public Qcow2Test,
                      public ::testing::WithParamInterface<std::tuple<uint32_t, uint32_t>> {};

TEST_P(Qcow2GrowTest, GrowKeepsDataAndGrowsL1) {
  auto [cluster, version] = GetParam();
  const uint64_t small = 8 * uint64_t(cluster) + 1536;
  // 70 L2 tables' worth and a sector: the L1 table needs 71 entries instead of 1.
  const uint64_t large = uint64_t(cluster) / 8 * cluster * 70 + 512;
  auto q = make({.size = small, .cluster_size = cluster, .version = version});
  ASSERT_TRUE(q);
  auto head = pattern(3 * cluster + 100, 3);
  auto tail = pattern(1536, 4);
  ASSERT_TRUE(q->write(head, 100));
  ASSERT_TRUE(q->write(tail, small - tail.size()));
  uint32_t old_l1 = q->header().l1_size;
  auto r = q->resize(large);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(q->size(), large);
  EXPECT_EQ(q->header().l1_size, 71u);
  EXPECT_GT(q->header().l1_size, old_l1);
  auto far = pattern(cluster + 300, 5);
  ASSERT_TRUE(q->write(far, large - far.size()));
  ASSERT_TRUE(q->write(far, large / 2));
  expect_clean(*q);
  q.reset();
  auto again = Qcow2::open(dir_ / "a.qcow2");
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ((*again)->size(), large);
  auto read_at = [&](uint64_t off, size_t n) {
    std::vector<uint8_t> v(n);
    EXPECT_TRUE((*again)->read(v, off));
    return v;
  };
  EXPECT_EQ(read_at(100, head.size()), head);
  EXPECT_EQ(read_at(small - tail.size(), tail.size()), tail);
  EXPECT_EQ(read_at(small, 4096), std::vector<uint8_t>(4096, 0));
  EXPECT_EQ(read_at(large - far.size(), far.size()), far);
  EXPECT_EQ(read_at(large / 2, far.size()), far);
  expect_clean(**again);
}

INSTANTIATE_TEST_SUITE_P(Clusters, Qcow2GrowTest,
                         ::testing::Values(std::tuple{512u, 3u}, std::tuple{512u, 2u},
                                           std::tuple{4096u, 3u}, std::tuple{65536u, 2u},
                                           std::tuple{65536u, 3u}, std::tuple{2u << 20, 3u}));

// 512 B clusters: one refcount block covers 128 KiB (16-bit) to 32 KiB (64-bit) of file, the
// refcount table of a small image (one or two clusters) 8 MiB or less; writing 12 MiB must grow
// it.
class Qcow2RefcountGrowTest : public Qcow2Test,
                              public ::testing::WithParamInterface<std::tuple<uint32_t, uint32_t>> {
};

TEST_P(Qcow2RefcountGrowTest, RefcountTableGrowsWhenTheFileOutgrowsIt) {
  auto [refbits, version] = GetParam();
  auto q =
      make({.size = 1 << 20, .cluster_size = 512, .version = version, .refcount_bits = refbits});
  ASSERT_TRUE(q);
  uint32_t old_rt = q->header().refcount_table_clusters;
  uint64_t old_rt_offset = q->header().refcount_table_offset;
  const uint64_t size = 24 << 20;
  ASSERT_TRUE(q->resize(size));
  // Every other 64 KiB, so that the file grows to about 12 MiB plus metadata.
  for (uint64_t off = 0; off < size; off += 128 << 10) {
    auto r = q->write(pattern(64 << 10, uint8_t(off >> 17)), off);
    ASSERT_TRUE(r) << r.error().message();
  }
  EXPECT_GT(q->header().refcount_table_clusters, old_rt);
  EXPECT_NE(q->header().refcount_table_offset, old_rt_offset);
  expect_clean(*q);
  q.reset();
  auto again = Qcow2::open(dir_ / "a.qcow2");
  ASSERT_TRUE(again) << again.error().message();
  for (uint64_t off = 0; off < size; off += 64 << 10) {
    std::vector<uint8_t> back(64 << 10);
    ASSERT_TRUE((*again)->read(back, off));
    auto want = off % (128 << 10) == 0 ? pattern(64 << 10, uint8_t(off >> 17))
                                       : std::vector<uint8_t>(64 << 10, 0);
    ASSERT_EQ(back, want) << off;
  }
  // Discarding everything frees the data; the grown table stays consistent.
  ASSERT_TRUE((*again)->trim(size, 0));
  expect_clean(**again);
}

INSTANTIATE_TEST_SUITE_P(Widths, Qcow2RefcountGrowTest,
                         ::testing::Values(std::tuple{16u, 3u}, std::tuple{16u, 2u},
                                           std::tuple{64u, 3u}, std::tuple{32u, 3u}));

TEST_F(Qcow2Test, ResizeRefusesShrinkAndBadSizes) {
  auto q = make({.size = 4 << 20, .cluster_size = 512});
  ASSERT_TRUE(q);
  auto shrink = q->resize(1 << 20);
  ASSERT_FALSE(shrink);
  EXPECT_EQ(shrink.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(shrink.error().message().find("shrinking a qcow2 volume is not supported"),
            std::string::npos)
      << shrink.error().message();
  auto odd = q->resize((8 << 20) + 100);
  ASSERT_FALSE(odd);
  EXPECT_NE(odd.error().message().find("multiple of 512"), std::string::npos);
  // 512 B clusters: a 32 MiB L1 table maps 128 GiB.
  auto huge = q->resize(256ull << 30);
  ASSERT_FALSE(huge);
  EXPECT_NE(huge.error().message().find("too large"), std::string::npos) << huge.error().message();
  EXPECT_FALSE(q->resize(UINT64_MAX / 512 * 512));
  EXPECT_TRUE(q->resize(4 << 20));  // same size: nothing to do
  EXPECT_EQ(q->size(), 4u << 20);
  expect_clean(*q);
  q.reset();
  auto ro = Qcow2::open(dir_ / "a.qcow2", {.mode = OpenMode::kReadOnly});
  ASSERT_TRUE(ro);
  EXPECT_EQ((*ro)->resize(8 << 20).error().code(), ErrorCode::kPermissionDenied);
}

TEST_F(Qcow2Test, GrowingOverALongerBackingFileReadsZeroes) {
  for (uint32_t version : {3u, 2u}) {
    SCOPED_TRACE(version);
    auto base = make({.size = 2 << 20, .cluster_size = 4096, .version = version}, "base.qcow2");
    auto data = pattern(2 << 20, 7);
    ASSERT_TRUE(base->write(data, 0));
    base.reset();
    auto top = make({.size = (1 << 20) + 1000 / 512 * 512,
                     .cluster_size = 4096,
                     .version = version,
                     .backing_file = "base.qcow2",
                     .backing_format = "qcow2"},
                    "top.qcow2");
    ASSERT_TRUE(top);
    uint64_t old = top->size();
    auto r = top->resize(3 << 20);
    ASSERT_TRUE(r) << r.error().message();
    std::vector<uint8_t> back(3 << 20);
    ASSERT_TRUE(top->read(back, 0));
    EXPECT_TRUE(std::equal(back.begin(), back.begin() + ptrdiff_t(old), data.begin()));
    EXPECT_TRUE(
        std::all_of(back.begin() + ptrdiff_t(old), back.end(), [](uint8_t b) { return b == 0; }));
    expect_clean(*top);
  }
}

TEST_F(Qcow2Test, BackingChainReadsThroughAndCopiesOnWrite) {
  auto base = make({.size = 1 << 20, .cluster_size = 4096}, "base.qcow2");
  auto data = pattern(1 << 20, 9);
  ASSERT_TRUE(base->write(data, 0));
  base.reset();
  auto top = make(
      {.size = 0, .cluster_size = 4096, .backing_file = "base.qcow2", .backing_format = "qcow2"},
      "top.qcow2");
  ASSERT_TRUE(top);
  EXPECT_EQ(top->size(), 1u << 20);
  std::vector<uint8_t> small = {1, 2, 3};
  ASSERT_TRUE(top->write(small, 5000));
  std::copy(small.begin(), small.end(), data.begin() + 5000);
  std::vector<uint8_t> back(1 << 20);
  ASSERT_TRUE(top->read(back, 0));
  EXPECT_EQ(back, data);
  auto map = top->block_status(1 << 20, 0);
  ASSERT_TRUE(map);
  EXPECT_EQ((*map)[0].flags, 0u);
  expect_clean(*top);
}

TEST_F(Qcow2Test, BackingLoopIsAnError) {
  ASSERT_TRUE(Qcow2::create(dir_ / "x.qcow2", {.size = 1 << 20}));
  ASSERT_TRUE(Qcow2::create(
      dir_ / "y.qcow2", {.size = 1 << 20, .backing_file = "x.qcow2", .backing_format = "qcow2"}));
  ASSERT_TRUE(Qcow2::create(
      dir_ / "x.qcow2", {.size = 1 << 20, .backing_file = "y.qcow2", .backing_format = "qcow2"}));
  auto q = Qcow2::open(dir_ / "x.qcow2");
  ASSERT_FALSE(q);
  EXPECT_NE(q.error().message().find("loop"), std::string::npos) << q.error().message();
}

TEST_F(Qcow2Test, CorruptHeadersAreClearErrors) {
  struct Case {
    uint64_t offset;
    std::vector<uint8_t> bytes;
    const char* expect;
  };
  std::vector<Case> cases = {
      {0, {0, 0, 0, 0}, "magic"},
      {4, {0, 0, 0, 9}, "version"},
      {20, {0, 0, 0, 40}, "cluster bits"},
      {36, {0, 0, 0, 0}, "L1 size"},
      {40, {0, 0, 0, 0, 0, 0, 0, 0}, "L1 table"},
      {40, {0, 0, 0, 0x10, 0, 0, 0, 0}, "beyond the end"},
      {48, {0, 0, 0, 0, 0, 0, 0, 0}, "refcount table"},
      {56, {0xff, 0xff, 0xff, 0xff}, "refcount table clusters"},
      {96, {0, 0, 0, 7}, "refcount order"},
      {72, {0, 0, 0, 0, 0, 0, 0, 0x80}, "incompatible"},
      {24, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "virtual size"},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(Qcow2::create(dir_ / "c.qcow2", {.size = 1 << 20}));
    corrupt_at(c.offset, c.bytes, "c.qcow2");
    auto q = Qcow2::open(dir_ / "c.qcow2");
    ASSERT_FALSE(q) << c.expect;
    EXPECT_NE(q.error().message().find(c.expect), std::string::npos) << q.error().message();
  }
}

TEST_F(Qcow2Test, L2EntryPointingAtMetadataIsNotWritten) {
  auto q = make({.size = 1 << 20, .cluster_size = 4096}, "m.qcow2");
  std::vector<uint8_t> one(4096, 1);
  ASSERT_TRUE(q->write(one, 0));
  uint64_t l1_offset = q->header().l1_table_offset;
  q.reset();
  // Point guest cluster 0 at the L1 table itself, flagged as owned.
  int fd = ::open((dir_ / "m.qcow2").c_str(), O_RDWR);
  uint8_t l1[8];
  ASSERT_TRUE(pread_full(fd, l1, l1_offset));
  uint64_t l2 = load_be64(l1) & qcow2::kOffsetMask;
  uint8_t bad[8];
  store_be64(bad, l1_offset | qcow2::kFlagCopied);
  ASSERT_TRUE(pwrite_full(fd, bad, l2));
  ::close(fd);
  auto reopened = Qcow2::open(dir_ / "m.qcow2");
  ASSERT_TRUE(reopened);
  auto w = (*reopened)->write(one, 0);
  ASSERT_FALSE(w);
  EXPECT_NE(w.error().message().find("metadata"), std::string::npos) << w.error().message();
  reopened->reset();
  auto again = Qcow2::open(dir_ / "m.qcow2");
  ASSERT_FALSE(again);  // now marked corrupt
  EXPECT_TRUE(Qcow2::open(dir_ / "m.qcow2", {.mode = OpenMode::kReadOnly}));
}

TEST_F(Qcow2Test, ConcurrentWritersKeepImageConsistent) {
  auto q = make({.size = 16 << 20, .cluster_size = 4096});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      auto data = pattern(4096, uint8_t(t));
      for (int i = 0; i < 200; ++i) {
        uint64_t block = uint64_t(i * 4 + t) % 4096;
        ASSERT_TRUE(q->write(data, block * 4096));
        if (i % 7 == 0) {
          ASSERT_TRUE(q->trim(4096, ((block + 13) % 4096) * 4096));
        }
      }
    });
  for (auto& t : threads) t.join();
  expect_clean(*q);
}

}  // namespace
}  // namespace vireo::storage
