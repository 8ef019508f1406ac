// Fuzz target: thin-pool metadata. A small valid pool (volumes, a snapshot and a clone, data,
// a checkpoint and live journal records) is built once; each input is spliced over part of its
// metadata (superblocks, journal, active or inactive checkpoint slot), optionally with the
// checksums recomputed so that the checkpoint decoder and the journal replay see the bytes,
// then the pool is opened and, if it opens, listed, read, written, trimmed, snapshotted,
// resized, checked and closed. A pool that was consistent when opened must stay consistent and
// reopen after Vireo's own changes, or the target aborts.
//
// Input: byte 0 = flags (bits 0-1 region: 0 superblocks, 1 journal, 2 active checkpoint,
// 3 inactive checkpoint; bit 2 recompute checksums; bit 3 cut the checkpoint at the end of the
// splice), bytes 1-4 = offset in the region (big-endian, modulo its size), then the bytes.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "base/log.h"
#include "storage/fuzz/fuzz.h"
#include "storage/io.h"
#include "storage/pool/thin_pool.h"

using namespace vireo;
using namespace vireo::storage;

namespace {

constexpr uint64_t kPoolSize = (18 << 20) + (2 << 20);  // metadata area, then 32 extents
constexpr uint64_t kJournalBytes = 64 << 10;
// The on-disk format (thin_meta.cc) as far as fixing checksums needs it.
constexpr size_t kSuperCrcAt = 124;
constexpr size_t kRecordHeader = 32;
constexpr uint32_t kRecordMagic = 0x56524543;

struct Base {
  ~Base() {
    std::error_code ec;
    if (!dir.empty()) std::filesystem::remove_all(dir, ec);
  }
  std::filesystem::path dir;
  std::filesystem::path path;
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> segments;  // the file's data
  uint64_t journal_off = 0, journal_bytes = 0, ckpt_bytes = 0;
  uint64_t ckpt_off[2] = {};
  uint32_t active = 0;
  uint64_t ckpt_len = 0;
};

uint32_t crc(const uint8_t* p, size_t n) {
  return uint32_t(::crc32(0, p, uInt(n)));
}

std::span<const uint8_t> current;  // the input being run, saved when an oracle fails

void die(const char* what, const std::string& detail) {
  std::fprintf(stderr, "thin fuzz: %s: %s\n", what, detail.c_str());
  std::string name = "thin-failure-" + std::to_string(::getpid()) + ".bin";
  if (FILE* f = std::fopen(name.c_str(), "wb")) {
    std::fwrite(current.data(), 1, current.size(), f);
    std::fclose(f);
    std::fprintf(stderr, "thin fuzz: input written to %s\n", name.c_str());
  }
  std::abort();
}

// Volumes, a snapshot and a clone with data, closed cleanly (checkpoint); then, in a child that
// exits without closing, more changes flushed to the journal only.
void build_pool(const std::filesystem::path& path) {
  if (!ThinPool::create(path, {.size = kPoolSize, .journal_bytes = kJournalBytes}))
    die("create", path.string());
  {
    auto pool = ThinPool::open(path);
    if (!pool) die("open", pool.error().message());
    auto& p = **pool;
    std::vector<uint8_t> data(100000, 0x5a);
    if (!p.create_volume("a", 4 << 20) || !p.create_volume("b", 1 << 30)) die("volumes", "");
    auto a = *p.open_volume("a");
    auto b = *p.open_volume("b");
    (void)a->write(data, 3000);
    (void)b->write(data, (1 << 30) - data.size());
    if (!p.snapshot("a", "a-snap", VolumeAccess::kReadOnly)) die("snapshot", "");
    (void)a->write(std::span(data).first(5000), 70000);
  }
  pid_t child = ::fork();
  if (child == 0) {
    auto pool = ThinPool::open(path);
    if (!pool) ::_exit(1);
    auto& p = **pool;
    std::vector<uint8_t> data(70000, 0xa5);
    (void)p.snapshot("b", "b-clone", VolumeAccess::kReadWrite);
    auto c = *p.open_volume("b-clone");
    (void)c->write(data, 1 << 20);
    (void)p.create_volume("c", 8 << 20);
    (void)p.resize_volume("a", 8 << 20);
    (void)(*p.open_volume("a"))->trim(64 << 10, 0);
    (void)p.remove_volume("c");
    (void)p.flush();
    ::_exit(0);  // no clean close: the records stay in the journal
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("journal phase", "");
}

void make_base(Base& b) {
  spdlog::set_level(spdlog::level::off);
  // tmpfs when there is one: the pool syncs often, and each input opens it twice.
  std::string tmpl = std::filesystem::is_directory("/dev/shm") ? "/dev/shm/vireo-thin-fuzz-XXXXXX"
                                                               : "/tmp/vireo-thin-fuzz-XXXXXX";
  if (!::mkdtemp(tmpl.data())) die("mkdtemp", "");
  b.dir = tmpl;
  b.path = b.dir / "pool";
  std::filesystem::path seed = b.dir / "seed";
  build_pool(seed);
  Fd fd(::open(seed.c_str(), O_RDONLY | O_CLOEXEC));
  off_t pos = 0;
  while (true) {
    off_t data = ::lseek(fd.get(), pos, SEEK_DATA);
    if (data < 0) break;
    off_t hole = ::lseek(fd.get(), data, SEEK_HOLE);
    std::vector<uint8_t> bytes(size_t(hole - data));
    if (!pread_full(fd.get(), bytes, uint64_t(data))) die("read seed", "");
    b.segments.emplace_back(uint64_t(data), std::move(bytes));
    pos = hole;
  }
  std::vector<uint8_t> sb(8192);
  if (!pread_full(fd.get(), sb, 0)) die("read superblocks", "");
  const uint8_t* s = load_be64(&sb[72]) >= load_be64(&sb[4096 + 72]) ? &sb[0] : &sb[4096];
  b.journal_off = load_be64(s + 32);
  b.journal_bytes = load_be64(s + 40);
  b.ckpt_off[0] = load_be64(s + 48);
  b.ckpt_off[1] = load_be64(s + 56);
  b.ckpt_bytes = load_be64(s + 64);
  b.active = load_be32(s + 80) & 1;
  b.ckpt_len = load_be64(s + 88);
  std::filesystem::remove(seed);
}

Base& base() {
  static Base b;
  static bool ready = (make_base(b), true);
  (void)ready;
  return b;
}

// Recomputes the journal records' checksums (while they parse), each superblock's checkpoint
// checksum over its slot, and the superblocks' own checksums.
void fix_checksums(int fd, const Base& b) {
  std::vector<uint8_t> j(b.journal_bytes);
  if (pread_full(fd, j, b.journal_off)) {
    for (size_t pos = 0; j.size() - pos >= kRecordHeader;) {
      uint8_t* p = j.data() + pos;
      uint32_t len = load_be32(p + 28);
      if (load_be32(p) != kRecordMagic || len > j.size() - pos - kRecordHeader) break;
      store_be32(p + 4, crc(p + 8, kRecordHeader - 8 + len));
      pos += kRecordHeader + len;
    }
    (void)pwrite_full(fd, j, b.journal_off);
  }
  for (uint64_t at : {0u, 4096u}) {
    uint8_t s[4096];
    if (!pread_full(fd, s, at)) continue;
    uint32_t active = load_be32(s + 80) & 1;
    uint64_t len = std::min(load_be64(s + 88), b.ckpt_bytes);
    std::vector<uint8_t> ckpt(len);
    if (pread_full(fd, ckpt, b.ckpt_off[active])) store_be32(s + 96, crc(ckpt.data(), ckpt.size()));
    store_be32(s + kSuperCrcAt, crc(s, kSuperCrcAt));
    (void)pwrite_full(fd, std::span<const uint8_t>(s, sizeof s), at);
  }
}

// Sets the checkpoint length in every superblock that names slot `slot`.
void cut_checkpoint(int fd, uint32_t slot, uint64_t len) {
  for (uint64_t at : {0u, 4096u}) {
    uint8_t s[4096];
    if (!pread_full(fd, s, at) || (load_be32(s + 80) & 1) != slot) continue;
    store_be64(s + 88, len);
    (void)pwrite_full(fd, std::span<const uint8_t>(s, sizeof s), at);
  }
}

bool prepare(const uint8_t* data, size_t size) {
  const Base& b = base();
  Fd fd(::open(b.path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd || ::ftruncate(fd.get(), off_t(kPoolSize)) != 0) return false;
  for (const auto& [off, bytes] : b.segments)
    if (!pwrite_full(fd.get(), bytes, off)) return false;
  if (size < 5) return true;
  uint8_t flags = data[0];
  uint64_t region_off, region_len;
  switch (flags & 3) {
    case 0:
      region_off = 0, region_len = 8192;
      break;
    case 1:
      region_off = b.journal_off, region_len = b.journal_bytes;
      break;
    default: {
      uint32_t slot = (flags & 3) == 2 ? b.active : 1 - b.active;
      region_off = b.ckpt_off[slot], region_len = b.ckpt_bytes;
    }
  }
  uint64_t at = load_be32(data + 1) % region_len;
  std::span<const uint8_t> splice(data + 5, std::min<size_t>(size - 5, region_len - at));
  if (!pwrite_full(fd.get(), splice, region_off + at)) return false;
  if ((flags & 8) && (flags & 3) >= 2)
    cut_checkpoint(fd.get(), (flags & 3) == 2 ? b.active : 1 - b.active, at + splice.size());
  if (flags & 4) fix_checksums(fd.get(), b);
  return true;
}

// Lists, reads, writes, trims, snapshots, resizes and removes a little of everything.
void exercise(ThinPool& p) {
  std::vector<ThinVolumeInfo> vols = p.volumes();
  std::vector<uint8_t> buf(70000, 0x3c);
  size_t n = 0;
  for (const ThinVolumeInfo& v : vols) {
    if (n++ == 4) break;
    auto dev = p.open_volume(v.name);
    if (!dev) continue;
    BlockDevice& d = **dev;
    uint64_t size = d.size();
    uint64_t len = std::min<uint64_t>(buf.size(), size);
    std::span<uint8_t> part(buf.data(), len);
    (void)d.read(part, 0);
    (void)d.read(part, size - len);
    (void)d.block_status(std::min<uint64_t>(size, 64 << 20), 0);
    if (d.read_only()) continue;
    (void)d.write(part, size / 2 - len / 2);
    (void)d.write(part, size - len);
    (void)d.trim(std::min<uint64_t>(size, 128 << 10), 0);
    (void)d.write_zeroes(len, size - len, ZeroMode::kMayTrim, ZeroSpeed::kAny);
  }
  if (!vols.empty()) {
    (void)p.snapshot(vols.front().name, "fz-snap", VolumeAccess::kReadOnly);
    (void)p.resize_volume(vols.back().name, vols.back().size + (64 << 10));
    (void)p.remove_volume(vols.front().name);
  }
  if (p.create_volume("fz-new", 1 << 20))
    if (auto d = p.open_volume("fz-new")) (void)(*d)->write(buf, 4096);
  (void)p.flush();
}

// How deep the inputs get, printed at exit: a target whose inputs never open tests little.
struct Stats {
  uint64_t inputs = 0, opened = 0, consistent = 0;
  ~Stats() {
    std::fprintf(stderr, "thin fuzz: %llu inputs, %llu opened, %llu consistent at open\n",
                 static_cast<unsigned long long>(inputs), static_cast<unsigned long long>(opened),
                 static_cast<unsigned long long>(consistent));
  }
} stats;

std::string first_message(const ThinCheckResult& r) {
  return r.messages.empty() ? std::string() : r.messages.front();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Base& b = base();
  current = {data, size};
  ++stats.inputs;
  if (!prepare(data, size)) return 0;
  bool clean = false;
  {
    auto pool = ThinPool::open(b.path);
    if (!pool) return 0;
    ++stats.opened;
    clean = (*pool)->check().ok();
    stats.consistent += clean;
    exercise(**pool);
    ThinCheckResult after = (*pool)->check();
    if (clean && !after.ok()) die("consistent pool became inconsistent", first_message(after));
  }
  if (!clean) return 0;
  auto again = ThinPool::open(b.path);
  if (!again) die("pool does not reopen after Vireo's own changes", again.error().message());
  ThinCheckResult r = (*again)->check();
  if (!r.ok()) die("reopened pool is inconsistent", first_message(r));
  return 0;
}

std::vector<std::string> vireo_fuzz_seeds() {
  // The valid pool's own bytes over each region (no-op splices), with and without checksum
  // fixing: mutations then corrupt them in place.
  const Base& b = base();
  (void)prepare(nullptr, 0);
  Fd fd(::open(b.path.c_str(), O_RDONLY | O_CLOEXEC));
  std::vector<std::string> seeds;
  struct Region {
    uint8_t kind;
    uint64_t off, len;
  };
  for (Region r : {Region{0, 0, 8192}, Region{1, b.journal_off, 4096},
                   Region{2, b.ckpt_off[b.active], b.ckpt_len},
                   Region{3, b.ckpt_off[1 - b.active], b.ckpt_len}}) {
    std::vector<uint8_t> bytes(std::min<uint64_t>(r.len, 64 << 10));
    if (!pread_full(fd.get(), bytes, r.off)) continue;
    for (uint8_t fix : {0, 4}) {
      std::string s(5, '\0');
      s[0] = char(r.kind | fix);
      s.append(bytes.begin(), bytes.end());
      seeds.push_back(std::move(s));
    }
  }
  return seeds;
}
