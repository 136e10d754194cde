// kvstash-sim replay: replays a Mooncake-format trace under one or all policies and reports
// TTFT/TBT quantiles, SLO attainment, effective capacity, rejections, hit ratio and prefill time.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include "common/trace.h"
#include "scheduler/plots.h"
#include "scheduler/progress_bar.h"
#include "scheduler/sim_commands.h"
#include "scheduler/sim_report.h"
#include "scheduler/spec_flags.h"

namespace kvstash::scheduler {
namespace {

struct ReplayOptions {
  std::string trace, policy = "all", csv, plots;
  bool json = false;
  CostFlags cost;
  AdmissionFlags admission;
  SimOptions sim;
};

int Fail(const std::string& msg) {
  std::fprintf(stderr, "kvstash-sim: replay: %s\n", msg.c_str());
  return 1;
}

int RunReplay(ReplayOptions& o) {
  if (o.cost.spec.block_tokens != kTraceBlockTokens) {
    return Fail("--block-tokens must be " + std::to_string(kTraceBlockTokens) +
                " for Mooncake-format traces");
  }
  auto cost = BuildCostModel(o.cost);
  if (!cost.ok()) return Fail(cost.status().ToString());
  auto router = BuildRouterOptions(o.admission);
  if (!router.ok()) return Fail(router.status().ToString());
  o.sim.router = *router;
  // The edge: --policy's name becomes the policy's kind here.
  std::vector<PolicyKind> policies;
  if (o.policy == "all") {
    for (const auto& n : kPolicyNames) policies.push_back(n.value);
  } else {
    Result<PolicyKind> policy = ParsePolicy(o.policy);
    if (!policy.ok()) return Fail(policy.status().ToString());
    policies = {*policy};
  }
  auto trace = LoadTrace(o.trace);
  if (!trace.ok()) return Fail(trace.status().ToString());

  std::vector<SimResult> runs;
  std::vector<PolicySummary> rows;
  for (const PolicyKind policy : policies) {
    ProgressBar bar(std::string(Name(policy)));
    SimOptions so = o.sim;
    so.progress = [&bar](double f) { bar.Update(f); };
    auto run = Simulate(*trace, *cost, policy, so);
    if (!run.ok()) return Fail(run.status().ToString());
    rows.push_back(Summarize(*run, o.sim.router.ttft_slo_s, o.sim.router.tbt_slo_s));
    runs.push_back(std::move(*run));
  }
  if (o.json) {
    std::cout << FormatJson(o.trace, o.sim.prefill, o.sim.decode, rows);
  } else {
    std::printf(
        "trace %s: %zu requests; %u prefill + %u decode instances, %llu-block local caches, rate "
        "x%g, "
        "admission %s, SLO TTFT %gs TBT %gms, seed %llu\n",
        o.trace.c_str(), trace->size(), o.sim.prefill, o.sim.decode,
        static_cast<unsigned long long>(o.sim.local_cache_blocks), o.sim.rate_scale,
        o.admission.admission.c_str(), o.admission.ttft_slo_s, o.admission.tbt_slo_ms,
        static_cast<unsigned long long>(o.sim.seed));
    std::printf(
        "cost model: prefill(n,p) = %.4g + %.4g*(n-p) + %.4g*(n^2-p^2) s; decode step = %.4g + "
        "%.4g*batch + %.4g*context s; %.1f MiB/block over %.0f GB/s\n",
        cost->prefill[0], cost->prefill[1], cost->prefill[2], cost->decode[0], cost->decode[1],
        cost->decode[2], double(cost->kv_bytes_per_block) / 1048576.0, cost->nic_bytes_s / 1e9);
    std::fputs(FormatTable(rows).c_str(), stdout);
  }
  if (!o.csv.empty()) {
    std::ofstream out(o.csv);
    out << FormatCsv(rows);
    if (!out) return Fail("cannot write " + o.csv);
  }
  if (!o.plots.empty()) {
    auto note = WritePlots(o.plots, runs);
    if (!note.ok()) return Fail(note.status().ToString());
    std::fprintf(stderr, "kvstash-sim: replay: %s\n", note->c_str());
  }
  return 0;
}

}  // namespace

void RegisterReplayCommand(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<ReplayOptions>();
  o->admission.admission = "off";  // the paper's Figure 5 admits everything
  CLI::App* cmd = app.add_subcommand(
      "replay", "replay a Mooncake-format JSONL trace over N prefill + M decode");
  cmd->add_option("--trace", o->trace,
                  "trace file (JSON Lines: timestamp, input_length, output_length, hash_ids)")
      ->required();
  cmd->add_option("--prefill", o->sim.prefill, "prefill instances")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--decode", o->sim.decode, "decode instances")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--policy", o->policy,
                  "random|round-robin|load-balance|local-cache-aware|global-cache-aware|all")
      ->capture_default_str();
  cmd->add_flag("--json", o->json, "print one JSON document instead of the table");
  cmd->add_option("--csv", o->csv, "also write the per-policy summary as CSV to this file");
  cmd->add_option("--plots", o->plots,
                  "write TTFT CDF and hit-ratio PNGs (gnuplot) into this directory");
  cmd->add_option("--rate-scale", o->sim.rate_scale,
                  "divide arrival times by this (2 = twice the request rate)")
      ->capture_default_str();
  cmd->add_option("--seed", o->sim.seed, "seed of the random policy")->capture_default_str();
  cmd->add_option("--local-cache-blocks", o->sim.local_cache_blocks,
                  "LRU capacity of each prefill instance, blocks")
      ->capture_default_str();
  cmd->add_option("--kvcache-balancing-threshold", o->sim.kvcache_balancing_threshold,
                  "global-cache-aware fetches the best holder's prefix when best > threshold x own")
      ->capture_default_str();
  AddAdmissionFlags(cmd, o->admission);
  cmd->add_option("--timeline-bucket-s", o->sim.timeline_bucket_s,
                  "hit-ratio-over-time bucket, seconds")
      ->capture_default_str();
  AddCostFlags(cmd, o->cost);
  cmd->callback([o, exit_code] { *exit_code = RunReplay(*o); });
}

}  // namespace kvstash::scheduler
