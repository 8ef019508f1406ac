// Fuzz target: a qcow2 image file (header, extensions, L1/L2/refcount tables, snapshot table)
// opened read-only and read-write, read, written, discarded and checked.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#include "base/log.h"
#include "storage/fuzz/fuzz.h"
#include "storage/io.h"
#include "storage/qcow2/qcow2.h"

using namespace vireo;
using namespace vireo::storage;

namespace {

Fd memfd_with(const uint8_t* data, size_t size) {
  Fd fd(::memfd_create("qcow2-fuzz", MFD_CLOEXEC));
  if (fd && size > 0 && !pwrite_full(fd.get(), {data, size}, 0)) fd.reset();
  return fd;
}

// Touches a bounded sample of the virtual disk: the start, the end and a few points between.
void exercise(Qcow2& q, bool write) {
  std::vector<uint8_t> buf(70000, 0x5a);
  uint64_t size = q.size();
  for (int i = 0; i <= 8; ++i) {
    uint64_t off = size / 8 * uint64_t(i);
    uint64_t len = std::min<uint64_t>(buf.size(), size - std::min(off, size));
    off = std::min(off, size - len);
    (void)q.read(std::span(buf.data(), len), off);
    (void)q.block_status(std::min<uint64_t>(size - off, 1 << 24), off);
    if (!write) continue;
    (void)q.write(std::span(buf.data(), len), off);
    (void)q.trim(len, off);
    (void)q.write_zeroes(len / 2, off, ZeroMode::kMayTrim, ZeroSpeed::kAny);
  }
  (void)q.check();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = (spdlog::set_level(spdlog::level::off), true);
  (void)quiet;
  uint64_t fsize = size;
  (void)qcow2::parse_header({data, size}, fsize);
  Qcow2OpenOptions options{
      .mode = OpenMode::kReadOnly, .open_backing = false, .l2_cache_bytes = 1 << 20};
  if (auto q = Qcow2::open_fd(memfd_with(data, size), "fuzz.qcow2", options)) {
    exercise(**q, false);
    for (const auto& s : (*q)->snapshots()) {
      Qcow2OpenOptions so = options;
      so.snapshot = s.id;
      if (auto snap = Qcow2::open_fd(memfd_with(data, size), "fuzz.qcow2", so))
        exercise(**snap, false);
      break;
    }
  }
  options.mode = OpenMode::kReadWrite;
  if (auto q = Qcow2::open_fd(memfd_with(data, size), "fuzz.qcow2", options)) exercise(**q, true);
  return 0;
}

std::vector<std::string> vireo_fuzz_seeds() {
  std::vector<std::string> seeds;
  for (uint32_t cluster : {512u, 4096u, 65536u})
    for (uint32_t version : {2u, 3u}) {
      char name[] = "/tmp/vireo-qcow2-seed-XXXXXX";
      int fd = ::mkstemp(name);
      if (fd < 0) continue;
      ::close(fd);
      Qcow2CreateOptions o{.size = 1 << 20, .cluster_size = cluster, .version = version};
      if (Qcow2::create(name, o)) {
        if (auto q = Qcow2::open(name)) {
          std::vector<uint8_t> d(3000, 0x11);
          (void)(*q)->write(d, 5000);
          (void)(*q)->write_zeroes(cluster, cluster * 4, ZeroMode::kMayTrim, ZeroSpeed::kAny);
        }
        if (auto f = RawFile::open(name, OpenMode::kReadOnly)) {
          std::string s((*f)->size(), '\0');
          if ((*f)->read({reinterpret_cast<uint8_t*>(s.data()), s.size()}, 0)) seeds.push_back(s);
        }
      }
      ::unlink(name);
    }
  return seeds;
}
