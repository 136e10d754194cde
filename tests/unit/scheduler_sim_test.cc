// Unit tests of the scheduler's simulator and reports, on traces built in the test.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "scheduler/sim_report.h"
#include "scheduler/simulator.h"

namespace kvstash::scheduler {
namespace {

CostModel Cost() { return *CostModel::Fit(DefaultProfile(ModelSpec{}), ModelSpec{}, 64); }

TraceRequest Request(uint64_t ts_ms, std::vector<uint64_t> ids, uint64_t output = 20) {
  TraceRequest r;
  r.timestamp_ms = ts_ms;
  r.input_length = ids.size() * 512;
  r.output_length = output;
  r.hash_ids = std::move(ids);
  return r;
}

// Conversations sharing system prompts and growing histories, like a chat trace.
std::vector<TraceRequest> SyntheticTrace(uint32_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<TraceRequest> trace;
  uint64_t next_id = 1000;
  std::vector<std::vector<uint64_t>> sessions(20);
  for (uint32_t i = 0; i < n; ++i) {
    auto& s = sessions[rng() % sessions.size()];
    if (s.empty()) s = {rng() % 3, 10 + rng() % 3};  // shared system prompt blocks
    for (uint64_t k = 0, add = 1 + rng() % 6; k < add; ++k) s.push_back(next_id++);
    trace.push_back(Request(uint64_t(i) * 150, s, 1 + rng() % 60));
    if (s.size() > 60) s.clear();
  }
  return trace;
}

SimOptions Options() {
  SimOptions o;
  o.prefill = 3;
  o.decode = 2;
  o.local_cache_blocks = 200;
  o.router.admission = Admission::kOff;
  return o;
}

TEST(Simulator, DeterministicForASeed) {
  auto trace = SyntheticTrace(400, 3);
  for (const auto& [policy, name] : kPolicyNames) {
    auto a = Simulate(trace, Cost(), policy, Options());
    auto b = Simulate(trace, Cost(), policy, Options());
    ASSERT_TRUE(a.ok() && b.ok()) << name;
    ASSERT_EQ(a->requests.size(), b->requests.size());
    for (size_t i = 0; i < a->requests.size(); ++i) {
      ASSERT_EQ(a->requests[i].ttft_s, b->requests[i].ttft_s) << name << " request " << i;
      ASSERT_EQ(a->requests[i].tbt_s, b->requests[i].tbt_s) << name << " request " << i;
    }
  }
  SimOptions other = Options();
  other.seed = 99;
  auto a = Simulate(trace, Cost(), PolicyKind::kRandom, Options());
  auto c = Simulate(trace, Cost(), PolicyKind::kRandom, other);
  bool differs = false;
  for (size_t i = 0; i < a->requests.size(); ++i)
    differs |= a->requests[i].ttft_s != c->requests[i].ttft_s;
  EXPECT_TRUE(differs);
}

TEST(Simulator, SecondIdenticalRequestHitsTheCache) {
  std::vector<uint64_t> ids = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<TraceRequest> trace = {Request(0, ids), Request(60'000, ids)};
  auto r = Simulate(trace, Cost(), PolicyKind::kLocalCacheAware, Options());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->requests[0].local_blocks, 0u);
  EXPECT_EQ(r->requests[1].local_blocks, 8u);
  EXPECT_LT(r->requests[1].ttft_s, r->requests[0].ttft_s / 5);
  EXPECT_GT(r->requests[0].tbt_s, 0);
  EXPECT_NEAR(r->requests[0].ttft_s, Cost().PrefillSeconds(4096, 0), 1e-9);
}

TEST(Simulator, GlobalCacheAwareReplicatesFromBusyHolder) {
  // Request 0 puts a 60-block prefix on one prefill instance (the holder). Requests 1..3 arrive
  // together later, each the prefix plus a block of its own. Each either runs on the holder and reuses
  // the whole prefix locally, or goes to another instance and fetches the whole prefix from the
  // holder; with three at once the holder is busy and at least one is sent elsewhere with a fetch.
  std::vector<uint64_t> shared(60);
  for (uint64_t i = 0; i < 60; ++i) shared[i] = i + 1;
  std::vector<TraceRequest> trace = {Request(0, shared)};
  for (uint64_t k = 0; k < 3; ++k) {
    auto ids = shared;
    ids.push_back(1000 + k);
    trace.push_back(Request(20'000 + k, ids));
  }
  SimOptions o = Options();
  auto r = Simulate(trace, Cost(), PolicyKind::kGlobalCacheAware, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->requests.size(), 4u);
  const uint32_t holder = r->requests[0].prefill;
  EXPECT_EQ(r->requests[0].local_blocks + r->requests[0].fetched_blocks, 0u);
  uint32_t fetchers = 0;
  for (size_t k = 1; k < r->requests.size(); ++k) {
    const RequestOutcome& q = r->requests[k];
    ASSERT_FALSE(q.rejected) << k;
    EXPECT_EQ(q.blocks, 61u) << k;
    if (q.prefill == holder) {
      EXPECT_EQ(q.local_blocks, 60u) << k;
      EXPECT_EQ(q.fetched_blocks, 0u) << k;
      EXPECT_EQ(q.fetch_source, -1) << k;
    } else {
      ++fetchers;
      EXPECT_EQ(q.fetch_source, int32_t(holder)) << k;
      EXPECT_EQ(q.fetched_blocks, 60u) << k;
      EXPECT_EQ(q.local_blocks, 0u) << k;
    }
  }
  EXPECT_GE(fetchers, 1u);
  auto summary = Summarize(*r, 30, 0.1);
  EXPECT_GT(summary.fetched_ratio, 0);
}

TEST(Simulator, CacheAwareBeatsRandomOnSharedPrefixes) {
  auto trace = SyntheticTrace(600, 5);
  auto random = Simulate(trace, Cost(), PolicyKind::kRandom, Options());
  auto global = Simulate(trace, Cost(), PolicyKind::kGlobalCacheAware, Options());
  ASSERT_TRUE(random.ok() && global.ok());
  auto rs = Summarize(*random, 30, 0.1), gs = Summarize(*global, 30, 0.1);
  EXPECT_LT(gs.ttft_s.mean, rs.ttft_s.mean);
  EXPECT_GT(gs.hit_ratio, rs.hit_ratio);
  EXPECT_LT(gs.prefill_gpu_s, rs.prefill_gpu_s);
}

TEST(Simulator, PredictedAdmissionRejectsUnderOverload) {
  auto trace = SyntheticTrace(600, 5);
  SimOptions o = Options();
  o.rate_scale = 20;  // far beyond capacity
  o.router.admission = Admission::kPredicted;
  o.router.ttft_slo_s = 5;
  auto r = Simulate(trace, Cost(), PolicyKind::kGlobalCacheAware, o);
  ASSERT_TRUE(r.ok());
  auto s = Summarize(*r, 5, 0.1);
  EXPECT_GT(s.rejected, 0u);
  EXPECT_EQ(s.rejected, s.rejected_ttft + s.rejected_tbt);
  EXPECT_GT(s.slo_attainment, 0.9);
}

TEST(Simulator, BadInputGetsClearErrors) {
  std::vector<TraceRequest> trace = {Request(0, {1, 2}), Request(10, {})};
  trace[1].input_length = 1000;  // two blocks' worth of tokens and no block
  auto r = Simulate(trace, Cost(), PolicyKind::kRoundRobin, Options());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("trace line 2"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("empty block chain"), std::string::npos);
  SimOptions zero = Options();
  zero.prefill = 0;
  EXPECT_EQ(Simulate({}, Cost(), PolicyKind::kRandom, zero).status().code(), StatusCode::kInvalidArgument);
  SimOptions rate = Options();
  rate.rate_scale = 0;
  EXPECT_FALSE(Simulate({}, Cost(), PolicyKind::kRandom, rate).ok());
  SimOptions threshold = Options();
  threshold.kvcache_balancing_threshold = 0.5;  // refused by MakePolicy
  EXPECT_FALSE(Simulate({}, Cost(), PolicyKind::kGlobalCacheAware, threshold).ok());
  std::vector<TraceRequest> absurd = {Request(0, {1})};
  absurd[0].input_length = 1ull << 50;
  EXPECT_FALSE(Simulate(absurd, Cost(), PolicyKind::kRandom, Options()).ok());
}

TEST(Report, QuantilesAndJsonShape) {
  Quantiles q = ComputeQuantiles({4, 1, 3, 2});
  EXPECT_DOUBLE_EQ(q.mean, 2.5);
  EXPECT_DOUBLE_EQ(q.p50, 2);
  EXPECT_DOUBLE_EQ(q.p99, 4);
  auto trace = SyntheticTrace(50, 1);
  auto r = Simulate(trace, Cost(), PolicyKind::kLoadBalance, Options());
  ASSERT_TRUE(r.ok());
  auto j = nlohmann::json::parse(FormatJson("t.jsonl", 3, 2, {Summarize(*r, 30, 0.1)}));
  EXPECT_EQ(j["trace"], "t.jsonl");
  EXPECT_EQ(j["prefill"], 3);
  EXPECT_EQ(j["decode"], 2);
  ASSERT_EQ(j["rows"].size(), 1u);
  std::vector<std::string> keys;
  for (auto& [k, v] : j["rows"][0].items()) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"hit_ratio", "policy", "rejected", "slo_attainment",
                                            "tbt_p99_ms", "ttft_mean_s", "ttft_p99_s"}));
  EXPECT_NE(FormatCsv({Summarize(*r, 30, 0.1)}).find("load-balance,50,"), std::string::npos);
}

}  // namespace
}  // namespace kvstash::scheduler
