#pragma once
// Rollback collects undo steps while a multi-step action proceeds; unless commit() is called,
// the destructor runs them in reverse order. This is how a failed create leaves nothing behind.
#include <functional>
#include <utility>
#include <vector>

namespace vireo {

class Rollback {
 public:
  Rollback() = default;
  Rollback(const Rollback&) = delete;
  Rollback& operator=(const Rollback&) = delete;
  ~Rollback() { run(); }

  void add(std::function<void()> undo) { steps_.push_back(std::move(undo)); }
  void commit() { steps_.clear(); }
  // Runs the undo steps now (newest first).
  void run() {
    while (!steps_.empty()) {
      auto step = std::move(steps_.back());
      steps_.pop_back();
      step();
    }
  }

 private:
  std::vector<std::function<void()>> steps_;
};

}  // namespace vireo
