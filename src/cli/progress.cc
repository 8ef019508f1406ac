#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

namespace vireo::cli {

ProgressBar::ProgressBar() : enabled_(::isatty(STDERR_FILENO)) {}

std::string ProgressBar::render(int percent, const std::string& stage, int width) {
  percent = std::clamp(percent, 0, 100);
  int filled = percent * width / 100;
  std::string bar(static_cast<size_t>(filled), '=');
  if (filled < width) bar += '>';
  bar.resize(static_cast<size_t>(width), ' ');
  return fmt::format("[{}] {:3}% {}", bar, percent, stage);
}

void ProgressBar::update(const api::Operation& op) {
  if (!enabled_ || op.progress_percent < 0) return;
  std::fprintf(stderr, "\r\033[K%s", render(op.progress_percent, op.progress_stage).c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (!drawn_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace vireo::cli
