#include "scheduler/sim_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace kvstash::scheduler {

Quantiles ComputeQuantiles(std::vector<double> v) {
  Quantiles q;
  if (v.empty()) return q;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  q.mean = sum / double(v.size());
  auto at = [&](double f) {
    size_t rank = size_t(std::ceil(f * double(v.size())));
    return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
  };
  q.p50 = at(0.50);
  q.p90 = at(0.90);
  q.p99 = at(0.99);
  return q;
}

PolicySummary Summarize(const SimResult& run, double ttft_slo_s, double tbt_slo_s) {
  PolicySummary s;
  s.policy = run.policy;
  s.requests = run.requests.size();
  s.makespan_s = run.makespan_s;
  std::vector<double> ttft, tbt;
  uint64_t ok = 0, blocks = 0, hits = 0, fetched = 0;
  for (const RequestOutcome& r : run.requests) {
    if (r.rejected) {
      ++s.rejected;
      if (r.reason == RejectReason::kTtftSlo) ++s.rejected_ttft;
      if (r.reason == RejectReason::kTbtSlo) ++s.rejected_tbt;
      continue;
    }
    ttft.push_back(r.ttft_s);
    if (r.tbt_s >= 0) tbt.push_back(r.tbt_s * 1000);
    if (r.ttft_s <= ttft_slo_s && r.tbt_s <= tbt_slo_s) ++ok;
    blocks += r.blocks;
    hits += r.local_blocks + r.fetched_blocks;
    fetched += r.fetched_blocks;
    s.prefill_gpu_s += r.prefill_compute_s;
  }
  s.ttft_s = ComputeQuantiles(std::move(ttft));
  s.tbt_ms = ComputeQuantiles(std::move(tbt));
  const uint64_t admitted = s.requests - s.rejected;
  s.slo_attainment = admitted ? double(ok) / double(admitted) : 0;
  s.effective_capacity = s.requests ? double(ok) / double(s.requests) : 0;
  s.hit_ratio = blocks ? double(hits) / double(blocks) : 0;
  s.fetched_ratio = blocks ? double(fetched) / double(blocks) : 0;
  return s;
}

std::string FormatTable(const std::vector<PolicySummary>& rows) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line,
                "%-19s %8s %8s %8s %8s | %7s %7s %7s | %6s %6s %8s %6s %6s %10s\n", "policy",
                "ttft_avg", "ttft_p50", "ttft_p90", "ttft_p99", "tbt_p50", "tbt_p90", "tbt_p99",
                "slo%", "eff%", "rejected", "hit%", "fetch%", "prefill_s");
  out += line;
  for (const auto& r : rows) {
    std::snprintf(line, sizeof line,
                  "%-19s %7.2fs %7.2fs %7.2fs %7.2fs | %5.1fms %5.1fms %5.1fms | %6.1f %6.1f %8llu "
                  "%6.1f %6.1f %10.0f\n",
                  r.policy.c_str(), r.ttft_s.mean, r.ttft_s.p50, r.ttft_s.p90, r.ttft_s.p99,
                  r.tbt_ms.p50, r.tbt_ms.p90, r.tbt_ms.p99, 100 * r.slo_attainment,
                  100 * r.effective_capacity, static_cast<unsigned long long>(r.rejected),
                  100 * r.hit_ratio, 100 * r.fetched_ratio, r.prefill_gpu_s);
    out += line;
  }
  return out;
}

std::string FormatCsv(const std::vector<PolicySummary>& rows) {
  std::string out =
      "policy,requests,rejected,rejected_ttft,rejected_tbt,ttft_mean_s,ttft_p50_s,ttft_p90_s,ttft_"
      "p99_s,"
      "tbt_mean_ms,tbt_p50_ms,tbt_p90_ms,tbt_p99_ms,slo_attainment,effective_capacity,hit_ratio,"
      "fetched_ratio,prefill_gpu_s,makespan_s\n";
  char line[1024];
  for (const auto& r : rows) {
    std::snprintf(line, sizeof line,
                  "%s,%llu,%llu,%llu,%llu,%.6f,%.6f,%.6f,%.6f,%.4f,%.4f,%.4f,%.4f,%.6f,%.6f,%.6f,%."
                  "6f,%.3f,%.3f\n",
                  r.policy.c_str(), static_cast<unsigned long long>(r.requests),
                  static_cast<unsigned long long>(r.rejected),
                  static_cast<unsigned long long>(r.rejected_ttft),
                  static_cast<unsigned long long>(r.rejected_tbt), r.ttft_s.mean, r.ttft_s.p50,
                  r.ttft_s.p90, r.ttft_s.p99, r.tbt_ms.mean, r.tbt_ms.p50, r.tbt_ms.p90,
                  r.tbt_ms.p99, r.slo_attainment, r.effective_capacity, r.hit_ratio,
                  r.fetched_ratio, r.prefill_gpu_s, r.makespan_s);
    out += line;
  }
  return out;
}

std::string FormatJson(const std::string& trace, uint32_t prefill, uint32_t decode,
                       const std::vector<PolicySummary>& rows) {
  nlohmann::ordered_json j;
  j["trace"] = trace;
  j["prefill"] = prefill;
  j["decode"] = decode;
  j["rows"] = nlohmann::ordered_json::array();
  for (const auto& r : rows) {
    j["rows"].push_back({{"policy", r.policy},
                         {"ttft_mean_s", r.ttft_s.mean},
                         {"ttft_p99_s", r.ttft_s.p99},
                         {"tbt_p99_ms", r.tbt_ms.p99},
                         {"slo_attainment", r.slo_attainment},
                         {"hit_ratio", r.hit_ratio},
                         {"rejected", r.rejected}});
  }
  return j.dump(2) + "\n";
}

}  // namespace kvstash::scheduler
