#include "cli/latency.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace kvstash::cli {

void LatencySamples::Merge(const LatencySamples& other) {
  samples_.insert(samples_.end(), other.samples_.begin(), other.samples_.end());
}

LatencySummary LatencySamples::Summarize() {
  LatencySummary summary;
  if (samples_.empty()) return summary;
  std::sort(samples_.begin(), samples_.end());
  const size_t n = samples_.size();
  auto rank = [&](double p) {
    const size_t r = static_cast<size_t>(std::ceil(p * static_cast<double>(n)));
    return samples_[std::clamp<size_t>(r, 1, n) - 1];
  };
  summary.count = n;
  summary.p50_ns = rank(0.50);
  summary.p99_ns = rank(0.99);
  summary.max_ns = samples_.back();
  summary.mean_ns = std::accumulate(samples_.begin(), samples_.end(), 0.0) / static_cast<double>(n);
  return summary;
}

}  // namespace kvstash::cli
