// kvstash-replay: replays a window of a Mooncake-format trace against a live cluster through the
// conductor's front door (kvstash-conductor --http), and prints the same table as `kvstash-sim
// replay` with the simulator's prediction for the same window, instance counts, policy and cost
// profile beside it. Exit codes: 0 ok, 1 the run failed, 2 usage error.
//
// Time: with emulated nodes at --time-scale s (each step takes s × the cost model's time) and the
// trace sent at --speed v, the simulator is run at rate scale v·s and the live times are divided by
// s, so both columns read in the cost model's seconds. Use v = 1/s for a like-for-like run.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "common/trace.h"
#include "replay/live_replay.h"
#include "replay/trace_prompts.h"
#include "scheduler/policy.h"
#include "scheduler/sim_report.h"
#include "scheduler/simulator.h"
#include "scheduler/spec_flags.h"

namespace {

using namespace kvstash;

struct Args {
  std::string trace, policy = "global-cache-aware", csv;
  double window_start_s = 0, window_s = 120, time_scale = 1;
  uint64_t max_requests = 100'000;
  bool json = false, no_sim = false;
  replay::LiveReplayOptions live;
  scheduler::CostFlags cost;
  scheduler::AdmissionFlags admission;
  scheduler::SimOptions sim;
};

int Fail(const std::string& why) {
  std::fprintf(stderr, "kvstash-replay: %s\n", why.c_str());
  return 1;
}

int Run(Args& a) {
  auto trace = LoadTrace(a.trace);
  if (!trace.ok()) return Fail(trace.status().ToString());
  const std::vector<TraceRequest> window = replay::TraceWindow(*trace, a.window_start_s, a.window_s, a.max_requests);
  if (window.empty()) return Fail("no request of the trace falls in the window");
  auto router = scheduler::BuildRouterOptions(a.admission);
  if (!router.ok()) return Fail(router.status().ToString());
  a.live.block_tokens = a.cost.spec.block_tokens;

  std::fprintf(stderr, "kvstash-replay: %zu requests of %s from %.0f s, %.1f s of trace time, at x%g to %s\n",
               window.size(), a.trace.c_str(), a.window_start_s, double(window.back().timestamp_ms) / 1000.0,
               a.live.speed, a.live.front_door.c_str());
  auto live = replay::ReplayLive(window, a.live);
  if (!live.ok()) return Fail(live.status().ToString());
  std::vector<scheduler::PolicySummary> rows = {
      replay::SummarizeLive(*live, "live " + a.policy, a.time_scale, router->ttft_slo_s, router->tbt_slo_s)};
  size_t failed = 0;
  std::string first_error;
  for (const replay::LiveOutcome& r : live->requests) {
    if (!r.failed) continue;
    if (failed++ == 0) first_error = r.reason;
  }

  if (!a.no_sim) {
    auto cost = scheduler::BuildCostModel(a.cost);
    if (!cost.ok()) return Fail(cost.status().ToString());
    scheduler::SimOptions so = a.sim;
    so.router = *router;
    so.rate_scale = a.live.speed * a.time_scale;
    // The edge: --policy names the simulator's policy (with --no-sim it is only the live row's label).
    auto policy = scheduler::ParsePolicy(a.policy);
    if (!policy.ok()) return Fail("simulator: " + policy.status().ToString());
    auto sim = scheduler::Simulate(window, *cost, *policy, so);
    if (!sim.ok()) return Fail("simulator: " + sim.status().ToString());
    rows.push_back(scheduler::Summarize(*sim, router->ttft_slo_s, router->tbt_slo_s));
    rows.back().policy = "sim " + a.policy;
  }
  if (a.json) {
    std::cout << scheduler::FormatJson(a.trace, a.sim.prefill, a.sim.decode, rows);
  } else {
    std::printf("trace %s: %zu requests from %.0f s; live at x%g, node time scale %g; simulator: %u prefill + %u "
                "decode, rate x%g; admission %s, SLO TTFT %gs TBT %gms; times in the cost model's seconds\n",
                a.trace.c_str(), window.size(), a.window_start_s, a.live.speed, a.time_scale, a.sim.prefill,
                a.sim.decode, a.live.speed * a.time_scale, a.admission.admission.c_str(), a.admission.ttft_slo_s,
                a.admission.tbt_slo_ms);
    std::fputs(scheduler::FormatTable(rows).c_str(), stdout);
    if (failed > 0) std::printf("live: %zu requests failed (first: %s)\n", failed, first_error.c_str());
    double late = 0;
    for (const replay::LiveOutcome& r : live->requests) late = std::max(late, r.sent_late_s);
    std::printf("live: the latest send was %.3f s behind its schedule (workers: %zu)\n", late, a.live.max_in_flight);
  }
  if (!a.csv.empty()) {
    std::ofstream out(a.csv);
    out << scheduler::FormatCsv(rows);
    if (!out) return Fail("cannot write " + a.csv);
  }
  return failed == live->requests.size() ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  a.admission.admission = "off";
  CLI::App app{"kvstash-replay: a trace window against a live cluster, beside the simulator", "kvstash-replay"};
  app.add_option("--front-door", a.live.front_door, "the conductor's HTTP front door HOST:PORT")->required();
  app.add_option("--trace", a.trace, "Mooncake-format JSONL trace")->required();
  app.add_option("--window-start-s", a.window_start_s, "start of the window in trace time")->capture_default_str();
  app.add_option("--window-s", a.window_s, "length of the window in trace time (0: to the end)")->capture_default_str();
  app.add_option("--max-requests", a.max_requests, "at most this many requests")->capture_default_str();
  app.add_option("--speed", a.live.speed, "trace seconds per wall second")->capture_default_str()->check(
      CLI::PositiveNumber);
  app.add_option("--time-scale", a.time_scale, "the emulated nodes' --time-scale (live times are divided by it)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--vocab", a.live.vocab, "token ids are drawn from [0, vocab)")->capture_default_str()->check(
      CLI::Range(1u, 1u << 24));
  app.add_option("--max-output-tokens", a.live.max_output_tokens, "cap on output_length (0: none)")
      ->capture_default_str();
  app.add_option("--max-in-flight", a.live.max_in_flight, "concurrent requests (HTTP connections)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--request-timeout-ms", a.live.request_timeout_ms, "one request's deadline")->capture_default_str();
  app.add_option("--policy", a.policy, "the conductor's policy (the label, and the simulator's)")->capture_default_str();
  app.add_option("--prefill", a.sim.prefill, "prefill instances, for the simulator")->capture_default_str();
  app.add_option("--decode", a.sim.decode, "decode instances, for the simulator")->capture_default_str();
  app.add_option("--local-cache-blocks", a.sim.local_cache_blocks, "simulated local cache per prefill instance")
      ->capture_default_str();
  app.add_flag("--no-sim", a.no_sim, "the live row only");
  app.add_flag("--json", a.json, "one JSON document instead of the table");
  app.add_option("--csv", a.csv, "also write the rows as CSV");
  scheduler::AddAdmissionFlags(&app, a.admission);
  scheduler::AddCostFlags(&app, a.cost);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return Run(a);
}
