#include "scheduler/progress_bar.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace kvstash::scheduler {

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), enabled_(isatty(STDERR_FILENO) == 1) {}

ProgressBar::~ProgressBar() {
  if (enabled_ && last_percent_ >= 0) std::fputs("\n", stderr);
}

void ProgressBar::Update(double fraction) {
  if (!enabled_) return;
  const int percent = int(std::clamp(fraction, 0.0, 1.0) * 100);
  if (percent == last_percent_) return;
  last_percent_ = percent;
  constexpr int kWidth = 40;
  const int filled = percent * kWidth / 100;
  std::fprintf(stderr, "\r%-20s [%.*s%*s] %3d%%", label_.c_str(), filled,
               "########################################", kWidth - filled, "", percent);
  std::fflush(stderr);
}

}  // namespace kvstash::scheduler
