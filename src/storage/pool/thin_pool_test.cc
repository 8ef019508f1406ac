#include "storage/pool/thin_pool.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <gtest/gtest.h>
#include <zlib.h>

#include "base/endian.h"
#include "storage/io.h"

namespace vireo::storage {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kExtent = 64 << 10;

class ThinPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vireo-thin-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    path_ = dir_ / "pool";
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::shared_ptr<ThinPool> make(uint64_t size = 64 * kMiB) {
    auto c = ThinPool::create(path_, {.size = size});
    EXPECT_TRUE(c) << c.error().message();
    auto p = ThinPool::open(path_);
    EXPECT_TRUE(p) << p.error().message();
    return p ? *p : nullptr;
  }
  static std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = uint8_t(seed + i * 7);
    return v;
  }
  static std::vector<uint8_t> read(BlockDevice& d, uint64_t off, size_t n) {
    std::vector<uint8_t> v(n);
    auto r = d.read(v, off);
    EXPECT_TRUE(r) << r.error().message();
    return v;
  }
  static void expect_clean(const ThinPool& p) {
    ThinCheckResult r = p.check();
    EXPECT_TRUE(r.ok()) << (r.messages.empty() ? "" : r.messages.front());
  }

  fs::path dir_;
  fs::path path_;
};

// A thin pool on a block device (a loop device here): the device's size is the pool's, data and
// metadata survive a reopen, discard returns extents.
TEST_F(ThinPoolTest, LivesOnABlockDevice) {
  if (::geteuid() != 0) GTEST_SKIP() << "loop devices need root";
  const fs::path backing = dir_ / "backing.img";
  { std::ofstream(backing.string()); }
  fs::resize_file(backing, 96 * kMiB);
  std::string loop;
  if (FILE* f =
          ::popen(("losetup --find --show " + backing.string() + " 2>/dev/null").c_str(), "r")) {
    char buf[64] = {};
    if (std::fgets(buf, sizeof buf, f)) loop = buf;
    ::pclose(f);
  }
  while (!loop.empty() && loop.back() == '\n') loop.pop_back();
  if (loop.empty()) GTEST_SKIP() << "no loop device available";
  struct Detach {
    std::string dev;
    ~Detach() { (void)!std::system(("losetup -d " + dev).c_str()); }
  } detach{loop};
  ASSERT_TRUE(ThinPool::create(loop, {}));  // the whole device
  {
    auto pool = ThinPool::open(loop);
    ASSERT_TRUE(pool) << pool.error().message();
    EXPECT_GT((*pool)->stats().extents, 0u);
    EXPECT_LE((*pool)->stats().extents * kExtent, 96 * kMiB);
    ASSERT_TRUE((*pool)->create_volume("v", 256 * kMiB));  // overcommitted: thin
    auto dev = *(*pool)->open_volume("v");
    ASSERT_TRUE(dev->write(pattern(kExtent, 9), 10 * kExtent));
    ASSERT_TRUE(dev->flush());
    EXPECT_EQ((*pool)->stats().used_extents, 1u);
  }
  auto pool = ThinPool::open(loop);
  ASSERT_TRUE(pool) << pool.error().message();
  auto dev = *(*pool)->open_volume("v");
  EXPECT_EQ(read(*dev, 10 * kExtent, kExtent), pattern(kExtent, 9));
  ASSERT_TRUE(dev->trim(kExtent, 10 * kExtent));
  ASSERT_TRUE(dev->flush());
  EXPECT_EQ((*pool)->stats().used_extents, 0u);
  expect_clean(**pool);
}

TEST_F(ThinPoolTest, AllocatesOnFirstWriteAndReadsZeroesElsewhere) {
  auto pool = make();
  ASSERT_TRUE(pool->create_volume("v", 1 << 30));
  auto dev = *pool->open_volume("v");
  EXPECT_EQ(dev->size(), 1u << 30);
  EXPECT_EQ(pool->stats().used_extents, 0u);
  auto data = pattern(4096, 1);
  ASSERT_TRUE(dev->write(data, 100 * kExtent + 512));
  EXPECT_EQ(read(*dev, 100 * kExtent + 512, 4096), data);
  EXPECT_EQ(read(*dev, 100 * kExtent, 512), std::vector<uint8_t>(512, 0));
  EXPECT_EQ(read(*dev, 0, 4096), std::vector<uint8_t>(4096, 0));
  EXPECT_EQ(pool->stats().used_extents, 1u);
  EXPECT_EQ(pool->volume("v")->allocated, kExtent);
  auto st = *dev->block_status(kExtent * 3, 99 * kExtent);
  ASSERT_EQ(st.size(), 3u);
  EXPECT_EQ(st[0].flags, Extent::kHole | Extent::kZero);
  EXPECT_EQ(st[1].flags, 0u);
  // A write spanning extents, unaligned.
  auto big = pattern(3 * kExtent, 9);
  ASSERT_TRUE(dev->write(big, 5 * kExtent - 100));
  EXPECT_EQ(read(*dev, 5 * kExtent - 100, big.size()), big);
  expect_clean(*pool);
}

TEST_F(ThinPoolTest, SnapshotIsIsolatedFromLaterWrites) {
  auto pool = make();
  ASSERT_TRUE(pool->create_volume("v", 16 * kMiB));
  auto dev = *pool->open_volume("v");
  auto a = pattern(2 * kExtent, 1);
  ASSERT_TRUE(dev->write(a, 0));
  ASSERT_TRUE(pool->snapshot("v", "snap", VolumeAccess::kReadOnly));
  EXPECT_EQ(pool->stats().used_extents, 2u);  // shared, not copied
  auto b = pattern(4096, 50);
  ASSERT_TRUE(dev->write(b, 4096));
  auto snap = *pool->open_volume("snap");
  EXPECT_TRUE(snap->read_only());
  EXPECT_FALSE(snap->write(b, 0));
  EXPECT_EQ(read(*snap, 0, a.size()), a);
  auto now = read(*dev, 0, a.size());
  EXPECT_TRUE(std::equal(b.begin(), b.end(), now.begin() + 4096));
  EXPECT_TRUE(std::equal(a.begin(), a.begin() + 4096, now.begin()));
  EXPECT_EQ(pool->stats().used_extents, 3u);  // one extent copied on write
  expect_clean(*pool);
  // Removing the origin keeps the snapshot's data.
  ASSERT_TRUE(pool->remove_volume("v"));
  EXPECT_EQ(read(*snap, 0, a.size()), a);
  EXPECT_EQ(pool->stats().used_extents, 2u);
  EXPECT_FALSE(dev->read(std::span(now).first(512), 0));  // the removed volume's device fails
  expect_clean(*pool);
}

TEST_F(ThinPoolTest, CloneIsWritableAndIndependent) {
  auto pool = make();
  ASSERT_TRUE(pool->create_volume("base", 8 * kMiB));
  auto base = *pool->open_volume("base");
  auto a = pattern(kExtent, 3);
  ASSERT_TRUE(base->write(a, 0));
  ASSERT_TRUE(pool->snapshot("base", "c1", VolumeAccess::kReadWrite));
  ASSERT_TRUE(pool->snapshot("c1", "c2", VolumeAccess::kReadWrite));
  auto c1 = *pool->open_volume("c1");
  auto c2 = *pool->open_volume("c2");
  auto b = pattern(100, 77);
  ASSERT_TRUE(c1->write(b, 10));
  auto c = pattern(100, 99);
  ASSERT_TRUE(c2->write(c, 10));
  EXPECT_EQ(read(*base, 0, kExtent), a);
  EXPECT_EQ(read(*c1, 10, 100), b);
  EXPECT_EQ(read(*c2, 10, 100), c);
  EXPECT_EQ(pool->volume("c2")->origin, "c1");
  expect_clean(*pool);
}

TEST_F(ThinPoolTest, SnapshotTimeDoesNotDependOnSize) {
  auto pool = make();
  ASSERT_TRUE(pool->create_volume("big", uint64_t(64) << 30));
  auto dev = *pool->open_volume("big");
  auto d = pattern(4096, 1);
  for (uint64_t i = 0; i < 64; ++i) ASSERT_TRUE(dev->write(d, i << 30));
  ASSERT_TRUE(pool->snapshot("big", "s", VolumeAccess::kReadOnly));
  EXPECT_EQ(pool->stats().used_extents, 64u);
  EXPECT_EQ(pool->volume("s")->allocated, 64 * kExtent);
  expect_clean(*pool);
}

TEST_F(ThinPoolTest, TrimFreesExtentsAndZeroesRead) {
  auto pool = make();
  ASSERT_TRUE(pool->create_volume("v", 16 * kMiB));
  auto dev = *pool->open_volume("v");
  auto a = pattern(8 * kExtent, 5);
  ASSERT_TRUE(dev->write(a, 0));
  EXPECT_EQ(pool->stats().used_extents, 8u);
  ASSERT_TRUE(dev->trim(4 * kExtent + 100, 1 * kExtent));  // 4 whole extents
  ASSERT_TRUE(dev->flush());
  EXPECT_EQ(pool->stats().used_extents, 4u);
  EXPECT_EQ(read(*dev, kExtent, 4 * kExtent), std::vector<uint8_t>(4 * kExtent, 0));
  ASSERT_TRUE(dev->write_zeroes(2 * kExtent, 6 * kExtent, ZeroMode::kMayTrim, ZeroSpeed::kAny));
  EXPECT_EQ(pool->stats().used_extents, 2u);
  EXPECT_EQ(read(*dev, 6 * kExtent, 2 * kExtent), std::vector<uint8_t>(2 * kExtent, 0));
  // Partial zeroing of data is not fast.
  EXPECT_EQ(dev->write_zeroes(512, 0, ZeroMode::kMayTrim, ZeroSpeed::kFastOnly).error().code(),
            ErrorCode::kUnavailable);
  ASSERT_TRUE(dev->write_zeroes(512, 0, ZeroMode::kMayTrim, ZeroSpeed::kAny));
  EXPECT_EQ(read(*dev, 0, 512), std::vector<uint8_t>(512, 0));
  expect_clean(*pool);
}

TEST_F(ThinPoolTest, FullPoolIsACleanErrorAndFreedSpaceIsReused) {
  auto pool = make(32 * kMiB);
  uint64_t extents = pool->stats().extents;
  ASSERT_TRUE(pool->create_volume("v", 1 << 30));  // overcommitted
  auto dev = *pool->open_volume("v");
  auto chunk = pattern(kExtent, 1);
  uint64_t i = 0;
  for (; i < extents; ++i) ASSERT_TRUE(dev->write(chunk, i * kExtent));
  auto full = dev->write(chunk, i * kExtent);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code(), ErrorCode::kTooLarge);
  EXPECT_EQ(full.error().sys_errno(), ENOSPC);
  EXPECT_NE(full.error().message().find("full"), std::string::npos);
  EXPECT_EQ(read(*dev, (i - 1) * kExtent, kExtent), chunk);
  ASSERT_TRUE(dev->trim(kExtent, 0));
  EXPECT_TRUE(dev->write(chunk, i * kExtent));
  expect_clean(*pool);
}

// Shrinks the checkpoint slots both superblocks describe to what the current checkpoint takes
// (checksums redone), as a tampered or damaged superblock may: any growth of the metadata then
// no longer fits a checkpoint.
void shrink_checkpoint_slots(const fs::path& pool) {
  Fd fd(::open(pool.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd);
  for (uint64_t at : {0u, 4096u}) {
    uint8_t s[4096];
    ASSERT_TRUE(pread_full(fd.get(), s, at));
    if (load_be32(s) == 0) continue;  // the blank second superblock of a new pool
    store_be64(s + 64, load_be64(s + 88));  // ckpt_bytes = ckpt_len
    store_be32(s + 124, uint32_t(::crc32(0, s, 124)));
    ASSERT_TRUE(pwrite_full(fd.get(), std::span<const uint8_t>(s, sizeof s), at));
  }
}

// A checkpoint slot too small for the pool's metadata must not lock the pool out: it reopens on
// its journal with the data written, and once what did not fit is removed, checkpoints work
// again.
TEST_F(ThinPoolTest, FullCheckpointSlotStillOpensOnItsJournal) {
  ASSERT_TRUE(ThinPool::create(path_, {.size = 64 * kMiB}));
  shrink_checkpoint_slots(path_);
  auto data = pattern(3 * kExtent, 9);
  {
    auto pool = ThinPool::open(path_);
    ASSERT_TRUE(pool) << pool.error().message();
    ASSERT_TRUE((*pool)->create_volume("v", 8 * kMiB));
    ASSERT_TRUE((*(*pool)->open_volume("v"))->write(data, kExtent));
    ASSERT_TRUE((*pool)->flush());
  }  // the closing checkpoint does not fit: the journal keeps the changes
  {
    auto pool = ThinPool::open(path_);
    ASSERT_TRUE(pool) << pool.error().message();
    auto dev = *(*pool)->open_volume("v");
    EXPECT_EQ(read(*dev, kExtent, data.size()), data);
    expect_clean(**pool);
    ASSERT_TRUE((*pool)->remove_volume("v"));
  }
  auto pool = ThinPool::open(path_);
  ASSERT_TRUE(pool) << pool.error().message();
  EXPECT_TRUE((*pool)->volumes().empty());
  expect_clean(**pool);
}

TEST_F(ThinPoolTest, AccountingPerVolumeAndPool) {
  auto pool = make();
  ASSERT_TRUE(pool->create_volume("a", 10 * kMiB));
  ASSERT_TRUE(pool->create_volume("b", 20 * kMiB));
  auto a = *pool->open_volume("a");
  auto d = pattern(3 * kExtent, 1);
  ASSERT_TRUE(a->write(d, 0));
  auto s = pool->stats();
  EXPECT_EQ(s.volumes, 2u);
  EXPECT_EQ(s.virtual_bytes, 30 * kMiB);
  EXPECT_EQ(s.used_bytes(), 3 * kExtent);
  EXPECT_EQ(pool->volume("a")->allocated, 3 * kExtent);
  EXPECT_EQ(pool->volume("b")->allocated, 0u);
  ASSERT_TRUE(pool->resize_volume("a", 1 * kMiB / 16 * 2));  // 128 KiB: drops the third extent
  EXPECT_EQ(pool->volume("a")->allocated, 2 * kExtent);
  ASSERT_TRUE(pool->resize_volume("a", 100 * kMiB));
  EXPECT_EQ(pool->volume("a")->size, 100 * kMiB);
  expect_clean(*pool);
}

TEST_F(ThinPoolTest, StateSurvivesReopen) {
  auto a = pattern(kExtent + 4096, 8);
  {
    auto pool = make();
    ASSERT_TRUE(pool->create_volume("v", 8 * kMiB));
    auto dev = *pool->open_volume("v");
    ASSERT_TRUE(dev->write(a, 4096));
    ASSERT_TRUE(pool->snapshot("v", "s", VolumeAccess::kReadOnly));
    ASSERT_TRUE(dev->write(pattern(4096, 1), 4096));
    ASSERT_TRUE(dev->flush());
  }
  auto pool = *ThinPool::open(path_);
  auto s = *pool->open_volume("s");
  EXPECT_EQ(read(*s, 4096, a.size()), a);
  EXPECT_EQ(read(**pool->open_volume("v"), 4096, 4096), pattern(4096, 1));
  expect_clean(*pool);
  EXPECT_EQ(ThinPool::open(path_).error().code(), ErrorCode::kConflict);  // locked
}

// Found by the thin fuzz target: a volume over 1 TiB (64 KiB extents) was accepted, but its
// root of more than 4096 leaf slots was refused as corrupt by the checkpoint decoder, so the
// pool no longer opened.
TEST_F(ThinPoolTest, VolumesUpToTheMaximumSizeSurviveReopen) {
  auto data = pattern(4096, 3);
  {
    auto pool = make();
    ASSERT_TRUE(pool->create_volume("big", ThinPool::kMaxVolumeSize));
    ASSERT_TRUE(pool->create_volume("grown", 4 * kMiB));
    ASSERT_TRUE(pool->resize_volume("grown", 2ull << 40));
    ASSERT_TRUE((*pool->open_volume("big"))->write(data, ThinPool::kMaxVolumeSize - 4096));
    ASSERT_TRUE((*pool->open_volume("grown"))->write(data, (2ull << 40) - 4096));
    ASSERT_TRUE(pool->snapshot("big", "big-snap", VolumeAccess::kReadOnly));
  }
  auto reopened = ThinPool::open(path_);
  ASSERT_TRUE(reopened) << reopened.error().message();
  auto& pool = *reopened;
  EXPECT_EQ(pool->volume("big")->size, ThinPool::kMaxVolumeSize);
  EXPECT_EQ(read(**pool->open_volume("big-snap"), ThinPool::kMaxVolumeSize - 4096, 4096), data);
  EXPECT_EQ(read(**pool->open_volume("grown"), (2ull << 40) - 4096, 4096), data);
  expect_clean(*pool);
}

// The root slots of all volumes are bounded (kMaxMappingSlots), at creation, resize and
// snapshot as at open, so a checkpoint cannot make the open allocate without bound.
TEST_F(ThinPoolTest, TotalVirtualSizeIsBounded) {
  auto pool = make();
  uint64_t per_volume = ThinPool::kMaxVolumeSize / (64 * 1024) / ThinPool::kLeafEntries;
  uint64_t fit = ThinPool::kMaxMappingSlots / per_volume;
  for (uint64_t i = 0; i < fit; ++i)
    ASSERT_TRUE(pool->create_volume("v" + std::to_string(i), ThinPool::kMaxVolumeSize));
  auto over = pool->create_volume("one-more", ThinPool::kMaxVolumeSize);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code(), ErrorCode::kTooLarge);
  EXPECT_EQ(pool->snapshot("v0", "s", VolumeAccess::kReadOnly).error().code(),
            ErrorCode::kTooLarge);
  // Shrinking v0 frees all but one of its slots: a small snapshot fits, growing back does not.
  ASSERT_TRUE(pool->resize_volume("v0", kMiB));
  ASSERT_TRUE(pool->snapshot("v0", "s", VolumeAccess::kReadOnly));
  EXPECT_EQ(pool->resize_volume("v0", ThinPool::kMaxVolumeSize).error().code(),
            ErrorCode::kTooLarge);
  pool.reset();
  auto reopened = ThinPool::open(path_);
  ASSERT_TRUE(reopened) << reopened.error().message();
  expect_clean(**reopened);
}

// Shrinking drops whole leaves past the new end instead of visiting every extent: a 64 TiB
// volume shrinks at once, its data beyond the end is freed, its snapshot keeps it.
TEST_F(ThinPoolTest, ShrinkingAHugeVolumeIsQuickAndFreesItsExtents) {
  auto pool = make();
  ASSERT_TRUE(pool->create_volume("v", ThinPool::kMaxVolumeSize));
  auto dev = *pool->open_volume("v");
  auto data = pattern(4096, 5);
  ASSERT_TRUE(dev->write(data, 0));
  ASSERT_TRUE(dev->write(data, ThinPool::kMaxVolumeSize / 2));
  ASSERT_TRUE(dev->write(data, ThinPool::kMaxVolumeSize - 4096));
  ASSERT_TRUE(pool->snapshot("v", "s", VolumeAccess::kReadOnly));
  ASSERT_TRUE(dev->write(data, 2 * kExtent));  // v's root is its own again
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(pool->resize_volume("v", 64 * kMiB));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
  EXPECT_EQ(pool->volume("v")->allocated, 2 * kExtent);
  EXPECT_EQ(pool->volume("s")->allocated, 3 * kExtent);
  EXPECT_EQ(read(**pool->open_volume("s"), ThinPool::kMaxVolumeSize - 4096, 4096), data);
  expect_clean(*pool);
  ASSERT_TRUE(pool->remove_volume("s"));
  EXPECT_EQ(pool->stats().used_extents, 2u);
  ASSERT_TRUE(pool->resize_volume("v", 4096));
  EXPECT_EQ(pool->stats().used_extents, 1u);
  expect_clean(*pool);
}

TEST_F(ThinPoolTest, BadNamesAndSizesAreRefused) {
  auto pool = make();
  EXPECT_EQ(pool->create_volume("a/b", kMiB).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(pool->create_volume("..", kMiB).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(pool->create_volume("v", 0).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(pool->create_volume("v", 1000).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(pool->create_volume("v", uint64_t(1) << 60).error().code(),
            ErrorCode::kInvalidArgument);
  ASSERT_TRUE(pool->create_volume("v", kMiB));
  EXPECT_EQ(pool->create_volume("v", kMiB).error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(pool->snapshot("nope", "x", VolumeAccess::kReadOnly).error().code(),
            ErrorCode::kNotFound);
  auto dev = *pool->open_volume("v");
  std::vector<uint8_t> b(4096);
  EXPECT_EQ(dev->write(b, kMiB - 100).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(ThinPool::create(path_, {.size = kMiB}));  // exists
  EXPECT_FALSE(ThinPool::create(dir_ / "small", {.size = kMiB}));
  EXPECT_FALSE(ThinPool::create(dir_ / "odd", {.size = 64 * kMiB, .extent_size = 12345}));
  expect_clean(*pool);
}

TEST_F(ThinPoolTest, CheckFindsInjectedRefcountCorruption) {
  auto pool = make();
  ASSERT_TRUE(pool->create_volume("v", 8 * kMiB));
  ASSERT_TRUE((*pool->open_volume("v"))->write(pattern(4096, 1), 0));
  expect_clean(*pool);
  pool->testing_set_refcount(0, 5);
  pool->testing_set_refcount(7, 1);
  ThinCheckResult r = pool->check();
  EXPECT_FALSE(r.ok());
  EXPECT_GE(r.errors, 2u);
}

TEST_F(ThinPoolTest, CorruptMetadataIsAClearErrorOnOpen) {
  {
    auto pool = make();
    ASSERT_TRUE(pool->create_volume("v", 8 * kMiB));
  }
  // check() of an open pool also reads the checkpoint back from disk.
  {
    auto pool = *ThinPool::open(path_);
    EXPECT_TRUE(pool->check().ok());
  }
  // Flip a byte inside the active checkpoint: its checksum no longer matches.
  std::vector<uint8_t> sb(8192);
  {
    Fd fd(::open(path_.c_str(), O_RDWR));
    ASSERT_TRUE(pread_full(fd.get(), sb, 0));
    // Find the newest superblock (seq at byte 72) and its active checkpoint slot.
    uint64_t s0 = 0, s1 = 0;
    for (int i = 0; i < 8; ++i) s0 = s0 << 8 | sb[72 + i], s1 = s1 << 8 | sb[4096 + 72 + i];
    const uint8_t* s = s0 > s1 ? sb.data() : sb.data() + 4096;
    uint32_t active = s[83];
    uint64_t off = 0;
    for (int i = 0; i < 8; ++i) off = off << 8 | s[48 + 8 * active + i];
    uint8_t byte = 0;
    ASSERT_TRUE(pread_full(fd.get(), std::span(&byte, 1), off + 12));
    byte ^= 0xff;
    ASSERT_TRUE(pwrite_full(fd.get(), std::span<const uint8_t>(&byte, 1), off + 12));
  }
  auto bad = ThinPool::open(path_);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("checksum"), std::string::npos) << bad.error().message();
  // Both superblocks broken: not a pool.
  {
    Fd fd(::open(path_.c_str(), O_RDWR));
    std::vector<uint8_t> junk(8192, 0x5a);
    ASSERT_TRUE(pwrite_full(fd.get(), junk, 0));
  }
  auto none = ThinPool::open(path_);
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message().find("not a Vireo thin pool"), std::string::npos)
      << none.error().message();
  // A short file.
  ::truncate(path_.c_str(), 100);
  EXPECT_FALSE(ThinPool::open(path_));
}

TEST_F(ThinPoolTest, ConcurrentWritersAndSnapshotsStayConsistent) {
  auto pool = make(128 * kMiB);
  ASSERT_TRUE(pool->create_volume("v", 16 * kMiB));
  auto dev = *pool->open_volume("v");
  constexpr int kThreads = 4;
  constexpr uint64_t kRegion = 1 * kMiB;
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  std::vector<uint8_t> last(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 1; i <= 60; ++i) {
        // Unaligned writes across extent boundaries, whole region rewritten with one byte value.
        std::vector<uint8_t> b(kRegion, uint8_t(i));
        uint64_t split = (rng() % (kRegion / 4096)) * 4096 + 512;
        ASSERT_TRUE(dev->write(std::span(b).first(split), t * kRegion));
        ASSERT_TRUE(dev->write(std::span(b).subspan(split), t * kRegion + split));
        last[t] = uint8_t(i);
        if (i % 20 == 0) {
          ASSERT_TRUE(dev->flush());
        }
      }
    });
  }
  std::thread snapper([&] {
    for (int i = 0; !stop && i < 40; ++i) {
      std::string name = "s" + std::to_string(i);
      ASSERT_TRUE(pool->snapshot("v", name, VolumeAccess::kReadOnly));
      if (i >= 2) {
        ASSERT_TRUE(pool->remove_volume("s" + std::to_string(i - 2)));
      }
    }
  });
  for (auto& w : writers) w.join();
  stop = true;
  snapper.join();
  for (int t = 0; t < kThreads; ++t)
    EXPECT_EQ(read(*dev, t * kRegion, kRegion), std::vector<uint8_t>(kRegion, last[t]));
  expect_clean(*pool);
}

// A child writes and flushes known patterns in a loop and reports each flushed generation through
// a pipe; it is killed with SIGKILL at a random moment, several times. After each kill the pool
// must open, check clean, and hold every flushed write.
TEST_F(ThinPoolTest, KillNineAtRandomPointsKeepsFlushedWrites) {
  // A small journal, so that checkpoints (superblock switches) happen while the child runs.
  ASSERT_TRUE(ThinPool::create(path_, {.size = 96 * kMiB, .journal_bytes = 8 << 10}));
  {
    auto pool = *ThinPool::open(path_);
    ASSERT_TRUE(pool->create_volume("v", 32 * kMiB));
  }
  constexpr uint64_t kSlots = 256;  // 4 KiB slots spread over the volume
  std::mt19937 rng(42);
  std::vector<uint32_t> flushed_gen(kSlots, 0);  // generation last known flushed per slot
  uint32_t gen_base = 0;
  uint64_t total_flushes = 0;
  for (int round = 0; round < 10; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      auto pool = ThinPool::open(path_);
      if (!pool) _exit(2);
      auto dev = *(*pool)->open_volume("v");
      std::mt19937 crng(round * 1000 + 7);
      std::vector<uint8_t> buf(4096);
      for (uint32_t gen = gen_base + 1;; ++gen) {
        // Each generation rewrites a few slots (some trimmed, some snapshotted) and flushes.
        uint32_t slots[4];
        for (uint32_t& s : slots) {
          s = crng() % kSlots;
          for (size_t i = 0; i < buf.size(); i += 4) {
            uint32_t word = gen ^ (s << 20) ^ uint32_t(i);
            std::memcpy(buf.data() + i, &word, 4);
          }
          if (auto w = dev->write(buf, s * (128 << 10)); !w) {
            std::fprintf(stderr, "child: %s\n", w.error().message().c_str());
            _exit(3);
          }
        }
        if (gen % 17 == 0) {
          // At most one snapshot lives at a time: take a new one, remove the older ones.
          for (const auto& v : (*pool)->volumes())
            if (v.name != "v" && !(*pool)->remove_volume(v.name)) _exit(5);
          if (!(*pool)->snapshot("v", "s" + std::to_string(gen), VolumeAccess::kReadOnly)) _exit(4);
        }
        if (auto f = dev->flush(); !f) {
          std::fprintf(stderr, "child: %s\n", f.error().message().c_str());
          _exit(6);
        }
        uint32_t msg[5] = {gen, slots[0], slots[1], slots[2], slots[3]};
        if (::write(fds[1], msg, sizeof msg) != sizeof msg) _exit(7);
      }
    }
    ::close(fds[1]);
    auto deadline = std::chrono::milliseconds(100 + rng() % 800);
    std::this_thread::sleep_for(deadline);
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
    uint32_t msg[5];
    uint32_t last = gen_base;
    while (::read(fds[0], msg, sizeof msg) == sizeof msg) {
      for (int k = 1; k < 5; ++k) flushed_gen[msg[k]] = msg[0];
      last = msg[0];
      ++total_flushes;
    }
    ::close(fds[0]);
    auto pool = ThinPool::open(path_);
    ASSERT_TRUE(pool) << pool.error().message();
    ThinCheckResult r = (*pool)->check();
    ASSERT_TRUE(r.ok()) << "round " << round << ": " << r.messages.front();
    auto dev = *(*pool)->open_volume("v");
    std::vector<uint8_t> buf(4096);
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (!flushed_gen[s]) continue;
      ASSERT_TRUE(dev->read(buf, s * (128 << 10)));
      uint32_t word;
      std::memcpy(&word, buf.data(), 4);
      uint32_t gen = word ^ (s << 20);
      // The slot holds its last flushed generation or a later (unflushed) one.
      EXPECT_GE(gen, flushed_gen[s]) << "round " << round << " slot " << s;
      for (size_t i = 0; i < buf.size(); i += 4) {
        std::memcpy(&word, buf.data() + i, 4);
        ASSERT_EQ(word, gen ^ (s << 20) ^ uint32_t(i)) << "torn slot " << s;
      }
    }
    gen_base = last + 1000000;  // later rounds write strictly newer generations
  }
  EXPECT_GT(total_flushes, 100u);
  std::printf("%llu flushed generations over 10 kills\n", (unsigned long long)total_flushes);
}

// Restore makes the volume share the snapshot's mapping again: the writes after the snapshot
// are gone, their extents freed, the snapshot still reads the same, and all of it survives a
// reopen (journal replay) with check() clean.
TEST_F(ThinPoolTest, RestoreRevertsVolumeToSnapshot) {
  auto pool = make();
  ASSERT_TRUE(pool->create_volume("v", 16 * kMiB));
  auto a = pattern(2 * kExtent, 1);
  {
    auto dev = *pool->open_volume("v");
    ASSERT_TRUE(dev->write(a, 0));
  }
  ASSERT_TRUE(pool->snapshot("v", "s", VolumeAccess::kReadOnly));
  auto b = pattern(4096, 50);
  {
    auto dev = *pool->open_volume("v");
    ASSERT_TRUE(dev->write(b, 0));
    ASSERT_TRUE(dev->write(b, 8 * kExtent));
  }
  EXPECT_EQ(pool->stats().used_extents, 4u);
  ASSERT_TRUE(pool->resize_volume("v", 32 * kMiB));
  auto r = pool->restore("v", "s");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(pool->stats().used_extents, 2u);  // the copied and the new extent are freed
  EXPECT_EQ(pool->volume("v")->size, 16 * kMiB);
  EXPECT_EQ(pool->volume("v")->allocated, 2 * kExtent);
  expect_clean(*pool);
  auto dev = *pool->open_volume("v");
  EXPECT_EQ(read(*dev, 0, a.size()), a);
  EXPECT_EQ(read(*dev, 8 * kExtent, 4096), std::vector<uint8_t>(4096, 0));
  // Writing after the restore copies again and leaves the snapshot alone.
  ASSERT_TRUE(dev->write(b, 0));
  auto snap = *pool->open_volume("s");
  EXPECT_EQ(read(*snap, 0, a.size()), a);
  expect_clean(*pool);
  EXPECT_EQ(pool->restore("s", "v").error().code(), ErrorCode::kInvalidArgument);  // v: no snapshot
  EXPECT_EQ(pool->restore("v", "nope").error().code(), ErrorCode::kNotFound);
  dev.reset();
  snap.reset();
  ASSERT_TRUE(pool->restore("v", "s"));
  // A copy taken now has the restore only in the journal (as after a crash): replay applies it.
  fs::copy_file(path_, dir_ / "crashed");
  pool.reset();
  auto replayed = ThinPool::open(dir_ / "crashed");
  ASSERT_TRUE(replayed) << replayed.error().message();
  expect_clean(**replayed);
  EXPECT_EQ(read(**(*replayed)->open_volume("v"), 0, a.size()), a);
  EXPECT_EQ((*replayed)->stats().used_extents, 2u);
  replayed->reset();
  auto reopened = ThinPool::open(path_);
  ASSERT_TRUE(reopened) << reopened.error().message();
  expect_clean(**reopened);
  EXPECT_EQ(read(**(*reopened)->open_volume("v"), 0, a.size()), a);
  EXPECT_EQ(read(**(*reopened)->open_volume("s"), 0, a.size()), a);
  EXPECT_EQ((*reopened)->stats().used_extents, 2u);
}

}  // namespace
}  // namespace vireo::storage
