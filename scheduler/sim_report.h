// Per-policy summaries of simulator runs and their renderings (table, CSV, JSON).
//
// Definitions:
//   ttft_*            over admitted requests
//   tbt_*             over admitted requests with at least one decode token (ms in reports)
//   slo_attainment    share of admitted requests meeting both the TTFT and the TBT SLO
//   effective_capacity share of all requests meeting both SLOs (rejected ones count as misses)
//   hit_ratio         reused prompt blocks (local + fetched) / prompt blocks of admitted requests
//   prefill_gpu_s     sum of prefill compute seconds (instance-seconds)
//
// Thread-safety: plain values and functions.
#pragma once

#include <string>
#include <vector>

#include "scheduler/simulator.h"

namespace kvstash::scheduler {

struct Quantiles {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
};

struct PolicySummary {
  std::string policy;
  uint64_t requests = 0, rejected = 0, rejected_ttft = 0, rejected_tbt = 0;
  Quantiles ttft_s, tbt_ms;
  double slo_attainment = 0, effective_capacity = 0, hit_ratio = 0, fetched_ratio = 0;
  double prefill_gpu_s = 0, makespan_s = 0;
};

PolicySummary Summarize(const SimResult& run, double ttft_slo_s, double tbt_slo_s);
Quantiles ComputeQuantiles(std::vector<double> values);  // nearest-rank; zeros when empty

std::string FormatTable(const std::vector<PolicySummary>& rows);
std::string FormatCsv(const std::vector<PolicySummary>& rows);
// {"trace","prefill","decode","rows":[{"policy","ttft_mean_s","ttft_p99_s","tbt_p99_ms",
//  "slo_attainment","hit_ratio","rejected"}...]}
std::string FormatJson(const std::string& trace, uint32_t prefill, uint32_t decode,
                       const std::vector<PolicySummary>& rows);

}  // namespace kvstash::scheduler
