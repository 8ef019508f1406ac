// Thin-pool snapshot creation time for a 1 GiB and a 64 GiB volume: each volume has data in
// every 256 MiB leaf (so the 64 GiB mapping is 64 times larger), then N snapshots are timed,
// each followed by one 4 KiB write to the origin (the first write after a snapshot copies the
// root and one leaf; timed separately).
//   storage_snapshot_bench DIR [N]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "storage/pool/thin_pool.h"

using namespace vireo::storage;
using Clock = std::chrono::steady_clock;

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: storage_snapshot_bench DIR [N]\n");
    return 2;
  }
  std::filesystem::path file = std::filesystem::path(argv[1]) / "snapbench.pool";
  int n = argc > 2 ? std::stoi(argv[2]) : 20;
  std::filesystem::remove(file);
  if (auto r = ThinPool::create(file, {.size = 2ull << 30}); !r) {
    std::fprintf(stderr, "%s\n", r.error().message().c_str());
    return 1;
  }
  auto pool = ThinPool::open(file);
  if (!pool) {
    std::fprintf(stderr, "%s\n", pool.error().message().c_str());
    return 1;
  }
  std::vector<uint8_t> block(4096, 0xab);
  std::printf("%-10s %8s %14s %14s %22s\n", "volume", "leaves", "snapshot p50", "snapshot min",
              "first write after p50");
  for (uint64_t gib : {1ull, 64ull}) {
    std::string name = "v" + std::to_string(gib);
    uint64_t size = gib << 30;
    if (!(*pool)->create_volume(name, size)) return 1;
    auto dev = *(*pool)->open_volume(name);
    uint64_t leaf_span = uint64_t(ThinPool::kLeafEntries) * (64 << 10);
    for (uint64_t off = 0; off < size; off += leaf_span)
      if (!dev->write(block, off)) return 1;
    if (!dev->flush()) return 1;
    std::vector<double> snap_us, write_us;
    for (int i = 0; i < n; ++i) {
      auto t0 = Clock::now();
      if (!(*pool)->snapshot(name, name + "s" + std::to_string(i), VolumeAccess::kReadOnly))
        return 1;
      auto t1 = Clock::now();
      if (!dev->write(block, 4096)) return 1;
      auto t2 = Clock::now();
      snap_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      write_us.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
    }
    std::printf("%-10s %8llu %11.0f us %11.0f us %19.0f us\n",
                (std::to_string(gib) + " GiB").c_str(), (unsigned long long)(size / leaf_span),
                median(snap_us), *std::min_element(snap_us.begin(), snap_us.end()),
                median(write_us));
  }
  pool->reset();
  std::filesystem::remove(file);
  return 0;
}
