// Vireo's qcow2 against qemu's own tools: images Vireo writes pass qemu-img check and hold the
// same data as the same writes done by qemu-io; images qemu writes read correctly in Vireo.
#include <gtest/gtest.h>

#include <random>

#include "base/file.h"
#include "base/json.h"
#include "peers.h"
#include "storage/qcow2/qcow2.h"

namespace vireo::storage {
namespace {

using namespace testing;

struct Op {
  enum Kind { kWrite, kZero, kDiscard } kind;
  uint64_t offset, length;
  uint8_t pattern;
};

// A deterministic mix of unaligned writes, zeroing and cluster-aligned discards.
std::vector<Op> make_ops(uint64_t size, uint64_t cluster, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::vector<Op> ops;
  for (int i = 0; i < 40; ++i) {
    uint64_t off = rng() % size;
    uint64_t len = std::min<uint64_t>(1 + rng() % (3 * cluster), size - off);
    int k = int(rng() % 6);
    if (k == 5) {
      off = off / cluster * cluster;
      len = std::max<uint64_t>(cluster, len / cluster * cluster);
      if (off + len > size) continue;
      ops.push_back({Op::kDiscard, off, len, 0});
    } else if (k == 4) {
      ops.push_back({Op::kZero, off, len, 0});
    } else {
      ops.push_back({Op::kWrite, off, len, uint8_t(1 + rng() % 250)});
    }
  }
  return ops;
}

class QemuInteropTest : public ::testing::Test {
 protected:
  struct Variant {
    uint32_t cluster, refbits, version;
  };
  // The same empty image made by Vireo (mine) and by qemu-img (theirs).
  void create_pair(const std::string& mine, const std::string& theirs, const Variant& v,
                   uint64_t size) {
    ASSERT_TRUE(Qcow2::create(mine, {.size = size,
                                     .cluster_size = v.cluster,
                                     .version = v.version,
                                     .refcount_bits = v.refbits}));
    auto r = run({"qemu-img", "create", "-q", "-f", "qcow2", "-o",
                  fmt::format("cluster_size={},refcount_bits={},compat={}", v.cluster, v.refbits,
                              v.version == 2 ? "0.10" : "1.1"),
                  theirs, std::to_string(size)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  void SetUp() override {
    if (!have_programs({"qemu-img", "qemu-io"})) GTEST_SKIP() << "qemu-utils not installed";
    dir_ = make_temp_dir("vireo-qemu-interop");
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  void expect_qemu_check_clean(const std::string& image) {
    auto r = run({"qemu-img", "check", image});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("No errors were found"), std::string::npos) << r.out << r.err;
  }
  // Vireo's view of the whole image must equal qemu's raw conversion of it.
  void expect_vireo_reads_like_qemu(const std::string& image, const Qcow2OpenOptions& options,
                                    std::vector<std::string> convert_extra = {}) {
    std::vector<std::string> argv = {"qemu-img", "convert", "-O", "raw"};
    argv.insert(argv.end(), convert_extra.begin(), convert_extra.end());
    argv.push_back(image);
    argv.push_back(path("expect.raw"));
    auto r = run(argv);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto expect = read_file(path("expect.raw"));
    ASSERT_TRUE(expect);
    auto q = Qcow2::open(image, options);
    ASSERT_TRUE(q) << q.error().message();
    ASSERT_EQ((*q)->size(), expect->size());
    std::vector<uint8_t> got(expect->size());
    ASSERT_TRUE((*q)->read(got, 0));
    EXPECT_TRUE(std::equal(got.begin(), got.end(), expect->begin(), [](uint8_t a, char b) {
      return a == uint8_t(b);
    })) << image;
  }

  uint64_t qemu_virtual_size(const std::string& image) {
    auto r = run({"qemu-img", "info", "--output=json", image});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto j = parse_json(r.out);
    return j && j->is_object() ? j->value("virtual-size", uint64_t(0)) : 0;
  }

  fs::path dir_;
};

TEST_F(QemuInteropTest, VireoWrittenImagesPassQemuCheckAndMatchQemuIo) {
  for (Variant v : {Variant{65536, 16, 3}, Variant{4096, 1, 3}, Variant{4096, 64, 3},
                    Variant{512, 8, 3}, Variant{65536, 16, 2}, Variant{2 << 20, 16, 3}}) {
    SCOPED_TRACE(fmt::format("cluster {} refcount bits {} v{}", v.cluster, v.refbits, v.version));
    const uint64_t size = 40 * uint64_t(v.cluster) + 1536;
    std::string mine = path("vireo.qcow2"), theirs = path("qemu.qcow2");
    create_pair(mine, theirs, v, size);
    if (HasFatalFailure()) return;
    ProcessResult r;
    auto q = Qcow2::open(mine);
    ASSERT_TRUE(q) << q.error().message();
    std::vector<std::string> qemu_io = {"qemu-io", "-f", "qcow2"};
    for (const Op& op : make_ops(size, v.cluster, v.cluster + v.refbits)) {
      if (op.kind == Op::kWrite) {
        ASSERT_TRUE((*q)->write(std::vector<uint8_t>(op.length, op.pattern), op.offset));
        qemu_io.insert(qemu_io.end(),
                       {"-c", fmt::format("write -P {} {} {}", op.pattern, op.offset, op.length)});
      } else if (op.kind == Op::kZero) {
        ASSERT_TRUE((*q)->write_zeroes(op.length, op.offset, ZeroMode::kMayTrim, ZeroSpeed::kAny));
        qemu_io.insert(qemu_io.end(), {"-c", fmt::format("write -z {} {}", op.offset, op.length)});
      } else {
        ASSERT_TRUE((*q)->trim(op.length, op.offset));
        qemu_io.insert(qemu_io.end(), {"-c", fmt::format("discard {} {}", op.offset, op.length)});
      }
    }
    q->reset();
    qemu_io.push_back(theirs);
    r = run(qemu_io);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    expect_qemu_check_clean(mine);
    r = run({"qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", mine, theirs});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  }
}

// Vireo grows an image (L1 table growth) between two rounds of writes; qemu-img resize does the
// same to a qemu image: both pass qemu-img check and compare equal.
TEST_F(QemuInteropTest, VireoGrownImagesPassQemuCheckAndMatchQemuResize) {
  for (Variant v : {Variant{65536, 16, 3}, Variant{512, 16, 3}, Variant{4096, 64, 3},
                    Variant{65536, 16, 2}, Variant{2 << 20, 16, 3}}) {
    SCOPED_TRACE(fmt::format("cluster {} refcount bits {} v{}", v.cluster, v.refbits, v.version));
    const uint64_t small = 40 * uint64_t(v.cluster) + 1536;
    // Three L2 tables' worth and a bit: the L1 table grows from 1 entry to 4.
    const uint64_t large = 3 * (uint64_t(v.cluster) / 8 * v.cluster) + 1024;
    std::string mine = path("vireo.qcow2"), theirs = path("qemu.qcow2");
    create_pair(mine, theirs, v, small);
    if (HasFatalFailure()) return;
    ProcessResult r;
    std::vector<std::string> before = {"qemu-io", "-f", "qcow2"};
    std::vector<std::string> after = before;
    {
      auto q = Qcow2::open(mine);
      ASSERT_TRUE(q) << q.error().message();
      for (const Op& op : make_ops(small, v.cluster, v.cluster + 7)) {
        if (op.kind != Op::kWrite) continue;
        ASSERT_TRUE((*q)->write(std::vector<uint8_t>(op.length, op.pattern), op.offset));
        before.insert(before.end(),
                      {"-c", fmt::format("write -P {} {} {}", op.pattern, op.offset, op.length)});
      }
      auto grown = (*q)->resize(large);
      ASSERT_TRUE(grown) << grown.error().message();
      EXPECT_EQ((*q)->header().l1_size, 4u);
      for (uint64_t off : {small - 100, large / 2 + 12345, large - 3 * uint64_t(v.cluster)}) {
        uint64_t len = std::min<uint64_t>(2 * v.cluster + 77, large - off);
        ASSERT_TRUE((*q)->write(std::vector<uint8_t>(len, 0x6b), off));
        after.insert(after.end(), {"-c", fmt::format("write -P 0x6b {} {}", off, len)});
      }
    }
    before.push_back(theirs);
    after.push_back(theirs);
    ASSERT_EQ((r = run(before)).exit_code, 0) << r.err;
    ASSERT_EQ((r = run({"qemu-img", "resize", "-q", "-f", "qcow2", theirs, std::to_string(large)}))
                  .exit_code,
              0)
        << r.err;
    ASSERT_EQ((r = run(after)).exit_code, 0) << r.err;
    expect_qemu_check_clean(mine);
    EXPECT_EQ(qemu_virtual_size(mine), large);
    r = run({"qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", mine, theirs});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  }
}

// A qemu-made image with 512 B clusters has a one-cluster refcount table covering 8 MiB of
// file; Vireo writes 12 MiB into it after growing it, so the refcount table must grow too.
TEST_F(QemuInteropTest, RefcountTableGrowthPassesQemuCheck) {
  for (std::string refbits : {"16", "64"}) {
    SCOPED_TRACE(refbits);
    std::string mine = path("vireo.qcow2"), theirs = path("qemu.qcow2");
    for (const std::string& img : {mine, theirs}) {
      auto r = run({"qemu-img", "create", "-q", "-f", "qcow2", "-o",
                    "cluster_size=512,refcount_bits=" + refbits, img, "1M"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    const uint64_t size = 24 << 20;
    std::vector<std::string> qemu_io = {"qemu-io", "-f", "qcow2"};
    {
      auto q = Qcow2::open(mine);
      ASSERT_TRUE(q) << q.error().message();
      uint32_t old_rt = (*q)->header().refcount_table_clusters;
      uint64_t old_rt_offset = (*q)->header().refcount_table_offset;
      ASSERT_TRUE((*q)->resize(size));
      for (uint64_t off = 0; off < size; off += 128 << 10) {
        uint8_t pattern = uint8_t(1 + off / (128 << 10) % 250);
        auto w = (*q)->write(std::vector<uint8_t>(64 << 10, pattern), off + 512);
        ASSERT_TRUE(w) << w.error().message();
        qemu_io.insert(qemu_io.end(),
                       {"-c", fmt::format("write -P {} {} {}", pattern, off + 512, 64 << 10)});
      }
      EXPECT_GT((*q)->header().refcount_table_clusters, old_rt);
      EXPECT_NE((*q)->header().refcount_table_offset, old_rt_offset);
      auto c = (*q)->check();
      ASSERT_TRUE(c);
      EXPECT_TRUE(c->ok()) << (c->messages.empty() ? "" : c->messages.front());
    }
    auto r = run({"qemu-img", "resize", "-q", "-f", "qcow2", theirs, std::to_string(size)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    qemu_io.push_back(theirs);
    ASSERT_EQ((r = run(qemu_io)).exit_code, 0) << r.err;
    expect_qemu_check_clean(mine);
    EXPECT_EQ(qemu_virtual_size(mine), size);
    r = run({"qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", mine, theirs});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    expect_vireo_reads_like_qemu(mine, {.mode = OpenMode::kReadOnly});
  }
}

TEST_F(QemuInteropTest, QemuResizedImagesReadCorrectly) {
  for (std::string opts : {"compat=1.1", "compat=0.10", "cluster_size=512"}) {
    SCOPED_TRACE(opts);
    std::string img = path("q.qcow2");
    ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, img, "2M"}).exit_code, 0);
    ASSERT_EQ(run({"qemu-io", "-f", "qcow2", "-c", "write -P 0x21 0 1M", img}).exit_code, 0);
    ASSERT_EQ(run({"qemu-img", "resize", "-q", "-f", "qcow2", img, "40M"}).exit_code, 0);
    ASSERT_EQ(run({"qemu-io", "-f", "qcow2", "-c", "write -P 0x22 39M 1M", img}).exit_code, 0);
    expect_vireo_reads_like_qemu(img, {.mode = OpenMode::kReadOnly});
    // And Vireo grows it further.
    {
      auto q = Qcow2::open(img);
      ASSERT_TRUE(q) << q.error().message();
      ASSERT_TRUE((*q)->resize(64 << 20));
      ASSERT_TRUE((*q)->write(std::vector<uint8_t>(4096, 0x23), (64 << 20) - 4096));
    }
    expect_qemu_check_clean(img);
    expect_vireo_reads_like_qemu(img, {.mode = OpenMode::kReadOnly});
  }
}

// Growing keeps qemu's internal snapshots readable (v3 entries record their own size); a v2
// image with snapshots is refused, as qemu refuses it.
TEST_F(QemuInteropTest, GrowingAnImageWithInternalSnapshots) {
  const uint64_t large = 1536ull << 20;  // the L1 table grows from 1 entry to 3
  std::string img = path("snap.qcow2");
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", img, "4M"}).exit_code, 0);
  ASSERT_EQ(run({"qemu-io", "-f", "qcow2", "-c", "write -P 5 0 2M", img}).exit_code, 0);
  ASSERT_EQ(run({"qemu-img", "snapshot", "-c", "first", img}).exit_code, 0);
  {
    auto q = Qcow2::open(img);
    ASSERT_TRUE(q);
    auto r = (*q)->resize(large);
    ASSERT_TRUE(r) << r.error().message();
    ASSERT_TRUE((*q)->write(std::vector<uint8_t>(100000, 7), 1 << 20));
    ASSERT_TRUE((*q)->write(std::vector<uint8_t>(100000, 8), large - 100000));
  }
  expect_qemu_check_clean(img);
  EXPECT_EQ(qemu_virtual_size(img), large);
  // The snapshot keeps its own size (qemu-img convert -l shows it at the image's current size,
  // zero beyond the snapshot's end, so only the snapshot's part is compared).
  {
    auto snap = Qcow2::open(img, {.mode = OpenMode::kReadOnly, .snapshot = "first"});
    ASSERT_TRUE(snap) << snap.error().message();
    EXPECT_EQ((*snap)->size(), 4u << 20);
    auto r = run(
        {"qemu-img", "convert", "-O", "raw", "-l", "snapshot.name=first", img, path("snap.raw")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    fs::resize_file(path("snap.raw"), 4 << 20);
    auto expect = read_file(path("snap.raw"));
    ASSERT_TRUE(expect);
    std::vector<uint8_t> got(4 << 20);
    ASSERT_TRUE((*snap)->read(got, 0));
    EXPECT_TRUE(std::equal(got.begin(), got.end(), expect->begin(),
                           [](uint8_t a, char b) { return a == uint8_t(b); }));
    EXPECT_EQ(got[0], 5);
  }
  auto r = run({"qemu-io", "-f", "qcow2", "-c", "read -P 7 1M 100000", "-c",
                fmt::format("read -P 8 {} 100000", large - 100000), img});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("failed"), std::string::npos) << r.out;

  std::string v2 = path("snap2.qcow2");
  ASSERT_EQ(
      run({"qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", v2, "4M"}).exit_code, 0);
  ASSERT_EQ(run({"qemu-img", "snapshot", "-c", "first", v2}).exit_code, 0);
  auto q = Qcow2::open(v2);
  ASSERT_TRUE(q);
  auto refused = (*q)->resize(8 << 20);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("snapshot"), std::string::npos)
      << refused.error().message();
}

TEST_F(QemuInteropTest, QemuWrittenImagesReadCorrectly) {
  for (std::string opts : {"compat=1.1", "compat=0.10", "cluster_size=512,refcount_bits=1",
                           "cluster_size=2M,refcount_bits=64", "lazy_refcounts=on"}) {
    SCOPED_TRACE(opts);
    std::string img = path("q.qcow2");
    ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, img, "8M"}).exit_code, 0);
    auto r =
        run({"qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 3000 70000",
             "-c", "write -z 512k 128k", "-c", "write -P 0x33 7M 1M", "-c", "discard 7M 64k", img});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    expect_vireo_reads_like_qemu(img, {.mode = OpenMode::kReadOnly});
    expect_vireo_reads_like_qemu(img, {});  // read-write open of a qemu image
    expect_qemu_check_clean(img);
  }
}

TEST_F(QemuInteropTest, CompressedImagesReadAndRewriteCorrectly) {
  std::string src = path("src.qcow2"), comp = path("comp.qcow2");
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", src, "4M"}).exit_code, 0);
  ASSERT_EQ(run({"qemu-io", "-f", "qcow2", "-c", "write -P 0x41 0 2M", "-c",
                 "write -P 0x42 3M 100k", src})
                .exit_code,
            0);
  auto r = run({"qemu-img", "convert", "-c", "-O", "qcow2", src, comp});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_vireo_reads_like_qemu(comp, {.mode = OpenMode::kReadOnly});
  {
    auto q = Qcow2::open(comp);
    ASSERT_TRUE(q);
    ASSERT_TRUE((*q)->write(std::vector<uint8_t>(5000, 0x7e), 70000));
  }
  ASSERT_EQ(run({"qemu-io", "-f", "qcow2", "-c", "write -P 0x7e 70000 5000", src}).exit_code, 0);
  expect_qemu_check_clean(comp);
  EXPECT_EQ(run({"qemu-img", "compare", src, comp}).exit_code, 0);
}

TEST_F(QemuInteropTest, BackingChainsReadAndWriteCorrectly) {
  std::string base = path("base.qcow2"), mid = path("mid.qcow2"), top = path("top.qcow2");
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", base, "4M"}).exit_code, 0);
  ASSERT_EQ(run({"qemu-io", "-f", "qcow2", "-c", "write -P 1 0 4M", base}).exit_code, 0);
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", mid})
                .exit_code,
            0);
  ASSERT_EQ(run({"qemu-io", "-f", "qcow2", "-c", "write -P 2 1M 1M", "-c", "write -z 3M 64k", mid})
                .exit_code,
            0);
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", top})
                .exit_code,
            0);
  expect_vireo_reads_like_qemu(top, {.mode = OpenMode::kReadOnly});
  {
    auto q = Qcow2::open(top);
    ASSERT_TRUE(q);
    ASSERT_TRUE((*q)->write(std::vector<uint8_t>(3000, 9), 1500000));
  }
  expect_qemu_check_clean(top);
  auto r = run({"qemu-io", "-f", "qcow2", "-c", "read -P 9 1500000 3000", "-c",
                "read -P 2 1048576 400000", "-c", "read -P 0 3M 64k", top});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("failed"), std::string::npos) << r.out;
}

TEST_F(QemuInteropTest, InternalSnapshotsListAndRead) {
  std::string img = path("snap.qcow2");
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", img, "4M"}).exit_code, 0);
  ASSERT_EQ(run({"qemu-io", "-f", "qcow2", "-c", "write -P 5 0 2M", img}).exit_code, 0);
  ASSERT_EQ(run({"qemu-img", "snapshot", "-c", "first", img}).exit_code, 0);
  ASSERT_EQ(run({"qemu-io", "-f", "qcow2", "-c", "write -P 6 1M 2M", img}).exit_code, 0);
  ASSERT_EQ(run({"qemu-img", "snapshot", "-c", "second", img}).exit_code, 0);
  {
    auto q = Qcow2::open(img, {.mode = OpenMode::kReadOnly});
    ASSERT_TRUE(q);
    ASSERT_EQ((*q)->snapshots().size(), 2u);
    EXPECT_EQ((*q)->snapshots()[0].name, "first");
    EXPECT_EQ((*q)->snapshots()[1].name, "second");
  }
  expect_vireo_reads_like_qemu(img, {.mode = OpenMode::kReadOnly, .snapshot = "first"},
                               {"-l", "snapshot.name=first"});
  // Writing over clusters shared with snapshots copies them; qemu still sees every snapshot.
  {
    auto q = Qcow2::open(img);
    ASSERT_TRUE(q);
    ASSERT_TRUE((*q)->write(std::vector<uint8_t>(100000, 7), 500000));
    ASSERT_TRUE((*q)->trim(1 << 20, 2 << 20));
  }
  expect_qemu_check_clean(img);
  expect_vireo_reads_like_qemu(img, {.mode = OpenMode::kReadOnly, .snapshot = "second"},
                               {"-l", "snapshot.name=second"});
  expect_vireo_reads_like_qemu(img, {.mode = OpenMode::kReadOnly});
}

TEST_F(QemuInteropTest, DirtyLazyRefcountImageIsCheckedBeforeWriting) {
  std::string img = path("lazy.qcow2");
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", img, "4M"})
                .exit_code,
            0);
  // qemu-io's abort leaves the dirty bit set, as a crash would.
  run({"qemu-io", "-f", "qcow2", "-c", "write -P 3 0 1M", "-c", "abort", img});
  auto ro = Qcow2::open(img, {.mode = OpenMode::kReadOnly});
  ASSERT_TRUE(ro) << ro.error().message();
  auto rw = Qcow2::open(img);
  if (rw) return;  // refcounts happened to be consistent: opened and dirty bit cleared
  EXPECT_NE(rw.error().message().find("dirty"), std::string::npos) << rw.error().message();
}

}  // namespace
}  // namespace vireo::storage
