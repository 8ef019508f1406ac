#pragma once
// Datapath workers: vireo-netd runs one poll loop per core, each over its own set of ports. A
// worker sends the frames it received itself (no hand-over between threads), so every port has
// one transmit queue per worker, picked by the calling thread's worker index. The control
// thread uses index 0: it transmits only while the workers are paused (see server.h).
#include <cstddef>
#include <vector>

namespace vireo::net {

constexpr size_t kMaxWorkers = 64;
// Without --threads: one worker per CPU up to this many. Each worker costs every port its
// transmit queues (the VXLAN port's copy buffers are ~1 MiB), and a host with more cores than
// this rarely has the ports to keep more busy.
constexpr size_t kDefaultMaxWorkers = 8;

// The number of workers; set before any port or router is made (default 1).
void set_worker_count(size_t count);
size_t worker_count();
// The calling thread's worker index: 0 unless set_this_worker was called on it.
size_t this_worker();
void set_this_worker(size_t index);

// One T per worker, made up front (the packet path never allocates).
template <typename T>
class PerWorker {
 public:
  PerWorker() : slots_(worker_count()) {}

  // A worker beyond the count the object was made with is a wiring bug: fail loudly.
  T& mine() { return slots_.at(this_worker()); }

 private:
  std::vector<T> slots_;
};

}  // namespace vireo::net
