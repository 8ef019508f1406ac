#pragma once
// A one-line progress bar on stderr for operations that report progress. Draws only when
// stderr is a terminal, so logs and pipes stay clean.
#include <string>

#include "api/operation.h"

namespace vireo::cli {

class ProgressBar {
 public:
  ProgressBar();
  ~ProgressBar() { finish(); }
  void update(const api::Operation& op);
  void finish();
  // The bar as text, for tests: "[=========>          ]  45% copying".
  static std::string render(int percent, const std::string& stage, int width = 30);

 private:
  bool enabled_;
  bool drawn_ = false;
};

}  // namespace vireo::cli
