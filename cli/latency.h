// Latency samples of one bench phase and their percentiles. A LatencySamples is filled by one
// thread; the per-thread samples are merged after the threads join.
#pragma once

#include <cstdint>
#include <vector>

namespace kvstash::cli {

struct LatencySummary {
  uint64_t count = 0;
  uint64_t p50_ns = 0;
  uint64_t p99_ns = 0;
  uint64_t max_ns = 0;
  double mean_ns = 0;
};

class LatencySamples {
 public:
  void Add(uint64_t ns) { samples_.push_back(ns); }
  void Merge(const LatencySamples& other);
  // Nearest-rank percentiles; all zero when empty. Sorts the samples.
  LatencySummary Summarize();

 private:
  std::vector<uint64_t> samples_;
};

}  // namespace kvstash::cli
