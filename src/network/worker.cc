#include "network/worker.h"

#include <algorithm>
#include <atomic>

namespace vireo::net {
namespace {

std::atomic<size_t> g_worker_count{1};
thread_local size_t t_worker = 0;

}  // namespace

void set_worker_count(size_t count) {
  g_worker_count.store(std::clamp<size_t>(count, 1, kMaxWorkers));
}

size_t worker_count() {
  return g_worker_count.load();
}

size_t this_worker() {
  return t_worker;
}

void set_this_worker(size_t index) {
  t_worker = index;
}

}  // namespace vireo::net
