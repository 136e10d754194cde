// Unit tests of scheduler/: cost-model fit, block cache, policies, router admission and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <unordered_set>

#include "scheduler/block_cache.h"
#include "scheduler/conductor_state.h"
#include "scheduler/cost_model.h"
#include "scheduler/least_squares.h"
#include "scheduler/prefix_index.h"
#include "scheduler/profile.h"
#include "scheduler/router.h"

namespace kvstash::scheduler {
namespace {

// A hand-set cluster: per-instance queues, prefix matches and decode loads.
class FakeView final : public ClusterView {
 public:
  std::vector<double> queue;
  std::vector<uint32_t> match;
  std::vector<DecodeLoad> now_load, later_load;
  size_t prefill_count() const override { return queue.size(); }
  size_t decode_count() const override { return now_load.size(); }
  double PrefillQueueSeconds(size_t i, double) const override { return queue[i]; }
  void PrefixMatches(std::span<const BlockId>, std::vector<uint32_t>& out) const override {
    out = match;
  }
  DecodeLoad DecodeLoadNow(size_t j) const override { return now_load[j]; }
  DecodeLoad DecodeLoadAt(size_t j, double) const override { return later_load[j]; }
};

CostModel Cost() {
  auto c = CostModel::Fit(DefaultProfile(ModelSpec{}), ModelSpec{}, 128);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return *c;
}

struct Req {
  std::vector<BlockId> chain;
  RouteRequest r;
  explicit Req(uint32_t blocks, uint64_t output = 100) : chain(blocks) {
    for (uint32_t i = 0; i < blocks; ++i) chain[i] = i + 1;
    r.input_tokens = uint64_t{blocks} * 512;
    r.output_tokens = output;
    r.chain = chain;
  }
};

Router MakeRouter(const std::string& policy, RouterOptions ro = {}, double threshold = 1.5) {
  auto p = MakePolicy(policy, {7, threshold});
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return Router(std::move(*p), Cost(), ro);
}

FakeView View(std::vector<double> queue, std::vector<uint32_t> match, size_t decode = 2) {
  FakeView v;
  v.queue = std::move(queue);
  v.match = std::move(match);
  v.now_load.assign(decode, DecodeLoad{});
  v.later_load.assign(decode, DecodeLoad{});
  return v;
}

TEST(LeastSquares, RecoversExactCoefficients) {
  std::vector<std::vector<double>> rows;
  std::vector<double> y;
  for (double n = 100; n <= 100000; n *= 3) {
    rows.push_back({1, n, n * n});
    y.push_back(0.25 + 3e-4 * n + 2e-9 * n * n);
  }
  auto x = LeastSquares(rows, y);
  ASSERT_TRUE(x.ok()) << x.status().ToString();
  EXPECT_NEAR((*x)[0], 0.25, 1e-9);
  EXPECT_NEAR((*x)[1] / 3e-4, 1, 1e-9);
  EXPECT_NEAR((*x)[2] / 2e-9, 1, 1e-9);
}

TEST(LeastSquares, RejectsDegenerateInput) {
  EXPECT_FALSE(LeastSquares({}, {}).ok());
  EXPECT_FALSE(LeastSquares({{1, 2}}, {3}).ok());  // fewer points than unknowns
  EXPECT_FALSE(LeastSquares({{1, 2}, {2, 4}, {3, 6}}, {1, 2, 3}).ok());  // dependent columns
  EXPECT_FALSE(LeastSquares({{1, 2}, {1}}, {1, 2}).ok());                // ragged
}

TEST(CostModel, FitRecoversAnalyticCoefficients) {
  ModelSpec s;
  CostModel c = Cost();
  const double flops = s.PeakFlops() * s.mfu;
  EXPECT_NEAR(c.prefill[1] / (s.layers * s.linear_coeff * double(s.hidden) * s.hidden / flops), 1,
              1e-6);
  EXPECT_NEAR(c.prefill[2] / (s.layers * s.attn_coeff * s.hidden / flops), 1, 1e-6);
  EXPECT_NEAR(c.prefill[0], 0, 1e-6);
  EXPECT_NEAR(c.decode[0] / (s.WeightBytes() / (s.HbmBytesPerSecond() * s.mbu)), 1, 1e-6);
  EXPECT_NEAR(c.decode[2] / (double(s.KvBytesPerToken()) / (s.HbmBytesPerSecond() * s.mbu)), 1,
              1e-6);
  EXPECT_EQ(s.KvBytesPerToken(), 327680u);  // Table 1: 80 layers x 2 x 1024 x 2 bytes
  EXPECT_NEAR(c.PrefillSeconds(8192, 0), s.PrefillSeconds(8192, 0), 1e-6);
  EXPECT_NEAR(c.TransferSeconds(1), 327680.0 * 512 / 100e9, 1e-12);
  EXPECT_EQ(c.CachedTokens(1000, 5), 999u);  // the last token is always computed
}

TEST(Profile, ParsesAndRoundTrips) {
  auto p = ParseProfile(
      "# measured\nprefill 1000 0 0.5\nprefill 2000 500 0.9 # comment\n\ndecode 4 4096 0.02\n",
      "t");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->prefill.size(), 2u);
  EXPECT_EQ(p->decode.size(), 1u);
  auto again = ParseProfile(FormatProfile(*p), "again");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->prefill[1].p, 500);
}

TEST(Profile, BadLinesNameTheLine) {
  auto bad = ParseProfile("prefill 10 0 1\nprefill 10 20 1\n", "prof");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("prof:2"), std::string::npos) << bad.status().message();
  EXPECT_FALSE(ParseProfile("warmup 1 2 3\n", "p").ok());
  EXPECT_FALSE(ParseProfile("decode 4 4096\n", "p").ok());
  EXPECT_FALSE(ParseProfile("decode 4 4096 -1\n", "p").ok());
  EXPECT_EQ(LoadProfile("/nonexistent/profile").status().code(), StatusCode::kNotFound);
  // Too few points to fit.
  auto few = ParseProfile("prefill 10 0 1\ndecode 1 10 1\n", "p");
  ASSERT_TRUE(few.ok());
  EXPECT_FALSE(CostModel::Fit(*few, ModelSpec{}, 8).ok());
}

TEST(BlockCache, PrefixMatchAndTailFirstEviction) {
  BlockCache cache(4);
  std::vector<BlockId> a = {1, 2, 3};
  cache.InsertChain(a);
  EXPECT_EQ(cache.PrefixMatch(std::vector<BlockId>{1, 2, 3, 4}), 3u);
  EXPECT_EQ(cache.PrefixMatch(std::vector<BlockId>{5, 1}), 0u);
  std::vector<BlockId> b = {10, 11};
  cache.InsertChain(b);  // evicts 3, the least recent (tail of a)
  EXPECT_EQ(cache.size(), 4u);
  EXPECT_EQ(cache.PrefixMatch(a), 2u);
  EXPECT_TRUE(cache.Contains(10));
  BlockCache none(0);
  none.InsertChain(a);
  EXPECT_EQ(none.PrefixMatch(a), 0u);
}

TEST(Policy, UnknownNameIsAnError) {
  auto p = MakePolicy("fastest", {});
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("global-cache-aware"), std::string::npos);
  EXPECT_FALSE(MakePolicy("global-cache-aware", {1, 0.5}).ok());
  EXPECT_FALSE(ParseAdmission("sometimes").ok());
}

TEST(Policy, RoundRobinCycles) {
  Router router = MakeRouter("round-robin");
  FakeView v = View({0, 0, 0}, {0, 0, 0}, 2);
  Req q(4);
  std::vector<uint32_t> got;
  for (int i = 0; i < 4; ++i) got.push_back(router.Route(q.r, v)->plan.prefill);
  EXPECT_EQ(got, (std::vector<uint32_t>{0, 1, 2, 0}));
}

TEST(Policy, RandomIsSeededAndInRange) {
  FakeView v = View({0, 0, 0, 0}, {0, 0, 0, 0}, 3);
  Req q(2);
  std::vector<uint32_t> a, b;
  Router r1 = MakeRouter("random"), r2 = MakeRouter("random");
  for (int i = 0; i < 50; ++i) {
    auto d1 = r1.Route(q.r, v), d2 = r2.Route(q.r, v);
    ASSERT_TRUE(d1.ok() && d2.ok());
    ASSERT_LT(d1->plan.prefill, 4u);
    ASSERT_LT(d1->decode, 3u);
    a.push_back(d1->plan.prefill * 10 + d1->decode);
    b.push_back(d2->plan.prefill * 10 + d2->decode);
  }
  EXPECT_EQ(a, b);
}

TEST(Policy, LoadBalancePicksLeastQueuedIgnoringCache) {
  Router router = MakeRouter("load-balance");
  FakeView v = View({5, 0.5, 2}, {40, 0, 0});
  auto d = router.Route(Req(40).r, v);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->plan.prefill, 1u);
  EXPECT_EQ(d->plan.fetch_source, -1);
}

TEST(Policy, LocalCacheAwareTradesQueueForPrefix) {
  // Instance 0 holds 39 of 40 blocks behind a 1 s queue; instance 1 is idle with nothing cached.
  // Prefilling 20480 tokens from scratch takes ~3 s, so waiting for instance 0 is best.
  Router router = MakeRouter("local-cache-aware");
  FakeView v = View({1.0, 0}, {39, 0});
  auto d = router.Route(Req(40).r, v);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->plan.prefill, 0u);
  EXPECT_EQ(d->plan.local_blocks, 39u);
  // Behind a 60 s queue the prefix is not worth it.
  v.queue = {60, 0};
  EXPECT_EQ(router.Route(Req(40).r, v)->plan.prefill, 1u);
}

TEST(Policy, GlobalCacheAwarePullsPrefixFromBusyHolder) {
  // The only holder is busy for 60 s; global-cache-aware runs on idle instance 1 and fetches the
  // prefix over the network, while local-cache-aware must recompute it there.
  FakeView v = View({60, 0, 3}, {39, 0, 10});
  Req q(40);
  auto g = MakeRouter("global-cache-aware").Route(q.r, v);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->plan.prefill, 1u);
  EXPECT_EQ(g->plan.fetch_source, 0);
  EXPECT_EQ(g->plan.fetch_blocks, 39u);
  EXPECT_GT(g->plan.transfer_s, 0);
  auto l = MakeRouter("local-cache-aware").Route(q.r, v);
  ASSERT_TRUE(l.ok());
  EXPECT_GT(l->plan.ttft_s(), g->plan.ttft_s());
  // With a threshold above the length ratio (39/10 < 5), instance 2 keeps its own prefix.
  v.queue = {60, 30, 0};
  auto t = MakeRouter("global-cache-aware", {}, 5.0).Route(q.r, v);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->plan.prefill, 2u);
  EXPECT_EQ(t->plan.fetch_blocks, 0u);
  EXPECT_EQ(t->plan.local_blocks, 10u);
}

TEST(Policy, GlobalCacheAwareFetchesFromTheStoreWhenItHoldsMore) {
  // No instance holds more than 5 blocks; the kvstash store holds 30: the plan pulls 30 - own
  // blocks from the store, and local-cache-aware (which ignores the store) is slower.
  FakeView v = View({0, 0}, {5, 0});
  Req q(40);
  q.r.store_blocks = 30;
  auto g = MakeRouter("global-cache-aware").Route(q.r, v);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->plan.fetch_source, PrefillPlan::kFromStore);
  EXPECT_EQ(g->plan.fetch_blocks + g->plan.local_blocks, 30u);
  EXPECT_GT(g->plan.transfer_s, 0);
  auto l = MakeRouter("local-cache-aware").Route(q.r, v);
  ASSERT_TRUE(l.ok());
  EXPECT_GT(l->plan.ttft_s(), g->plan.ttft_s());
  // When an instance holds at least as much as the store, the instance stays the source.
  q.r.store_blocks = 4;
  auto i = MakeRouter("global-cache-aware").Route(q.r, v);
  ASSERT_TRUE(i.ok());
  EXPECT_NE(i->plan.fetch_source, PrefillPlan::kFromStore);
}

TEST(Router, PicksDecodeByPredictedTbt) {
  FakeView v = View({0}, {0}, 3);
  v.later_load = {{64, 1'000'000}, {8, 50'000}, {32, 400'000}};
  auto d = MakeRouter("global-cache-aware").Route(Req(4).r, v);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->decode, 1u);
}

TEST(Router, RejectsOnTtftSlo) {
  RouterOptions ro;
  ro.ttft_slo_s = 5;
  FakeView v = View({10, 12}, {0, 0});
  auto d = MakeRouter("load-balance", ro).Route(Req(4).r, v);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->reject, RejectReason::kTtftSlo);
  ro.admission = Admission::kOff;
  EXPECT_FALSE(MakeRouter("load-balance", ro).Route(Req(4).r, v)->rejected());
}

TEST(Router, PredictedAdmissionJudgesLoadAtArrival) {
  // The decode instance is overloaded now, but its sequences finish before this prefill completes.
  FakeView v = View({0}, {0}, 1);
  v.now_load = {{128, 3'000'000}};
  v.later_load = {{4, 40'000}};
  RouterOptions ro;
  ro.tbt_slo_s = 0.05;
  ro.admission = Admission::kCurrent;
  auto current = MakeRouter("global-cache-aware", ro).Route(Req(40).r, v);
  ASSERT_TRUE(current.ok());
  EXPECT_EQ(current->reject, RejectReason::kTbtSlo);
  ro.admission = Admission::kPredicted;
  auto predicted = MakeRouter("global-cache-aware", ro).Route(Req(40).r, v);
  ASSERT_TRUE(predicted.ok());
  EXPECT_FALSE(predicted->rejected());
}

TEST(Router, BadInputGetsClearErrors) {
  Router router = MakeRouter("global-cache-aware");
  FakeView v = View({0}, {0});
  Req empty(0);
  empty.r.input_tokens = 1000;
  auto e = router.Route(empty.r, v);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("empty block chain"), std::string::npos);
  Req short_prompt(0);  // shorter than a block: no full block, a valid request with nothing to reuse
  short_prompt.r.input_tokens = 100;
  EXPECT_TRUE(router.Route(short_prompt.r, v).ok());
  Req mismatch(3);
  mismatch.r.input_tokens = 5000;
  auto m = router.Route(mismatch.r, v);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("do not cover"), std::string::npos);
  Req huge(2);
  huge.r.input_tokens = 1ull << 40;
  EXPECT_EQ(router.Route(huge.r, v).status().code(), StatusCode::kInvalidArgument);
  Req long_out(2, 1ull << 40);
  EXPECT_EQ(router.Route(long_out.r, v).status().code(), StatusCode::kInvalidArgument);
  FakeView no_decode = View({0}, {0}, 0);
  EXPECT_EQ(router.Route(Req(2).r, no_decode).status().code(), StatusCode::kFailedPrecondition);
  FakeView no_prefill = View({}, {}, 1);
  EXPECT_EQ(router.Route(Req(2).r, no_prefill).status().code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace kvstash::scheduler

namespace kvstash::scheduler {
namespace {

// The conductor's holder-set index answers exactly what probing every instance's cache answers.
TEST(PrefixIndex, MatchesPerInstanceCaches) {
  constexpr uint32_t kInstances = 70;  // spans two 64-bit words
  std::mt19937_64 rng(5);
  PrefixIndex index;
  std::vector<std::unordered_set<BlockId>> sets(kInstances);
  for (int op = 0; op < 20000; ++op) {
    const uint32_t inst = uint32_t(rng() % kInstances);
    const BlockId b = rng() % 64;
    if (rng() % 4 == 0) {
      index.Remove(inst, b);
      sets[inst].erase(b);
    } else {
      index.Add(inst, b);
      sets[inst].insert(b);
    }
  }
  index.Clear(3);
  sets[3].clear();
  std::vector<uint32_t> got;
  for (int q = 0; q < 500; ++q) {
    std::vector<BlockId> chain(1 + rng() % 12);
    for (auto& b : chain) b = rng() % 64;
    index.Matches(chain, kInstances, got);
    ASSERT_EQ(got.size(), kInstances);
    for (uint32_t i = 0; i < kInstances; ++i) {
      uint32_t want = 0;
      while (want < chain.size() && sets[i].count(chain[want])) ++want;
      ASSERT_EQ(got[i], want) << "instance " << i << " query " << q;
    }
  }
}

TEST(ConductorState, UnknownInstancesAndRolesAreErrors) {
  ConductorState s;
  ASSERT_TRUE(s.Register("p", Role::kPrefill).ok());
  ASSERT_TRUE(s.Register("d", Role::kDecode).ok());
  EXPECT_EQ(*s.Register("p", Role::kPrefill), 0u);  // re-registration keeps the index
  EXPECT_EQ(s.Register("p", Role::kDecode).status().code(), StatusCode::kAlreadyExists);
  const std::vector<BlockId> blocks = {1, 2};
  EXPECT_EQ(s.KvEvent("x", blocks, {}).code(), StatusCode::kNotFound);
  EXPECT_EQ(s.KvEvent("d", blocks, {}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.PrefillHeartbeat("d", 0, 1).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.DecodeHeartbeat("p", 0, 0.01, {}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.PrefillHeartbeat("p", 0, std::nan("")).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(s.KvEvent("p", blocks, {}).ok());
  std::vector<uint32_t> m;
  s.PrefixMatches(blocks, m);
  EXPECT_EQ(m, std::vector<uint32_t>{2});
  ASSERT_TRUE(s.Register("p", Role::kPrefill).ok());  // restarted: its cache is gone
  s.PrefixMatches(blocks, m);
  EXPECT_EQ(m, std::vector<uint32_t>{0});
  // Decode load: of two sequences, only the long one is still running 1 s (100 steps) later.
  ASSERT_TRUE(s.DecodeHeartbeat("d", 10, 0.01, {{1000, 50}, {2000, 500}}).ok());
  EXPECT_EQ(s.DecodeLoadNow(0).batch, 2u);
  EXPECT_EQ(s.DecodeLoadAt(0, 11).batch, 1u);
  EXPECT_EQ(s.DecodeLoadAt(0, 11).context_tokens, 2100u);
}

}  // namespace
}  // namespace kvstash::scheduler
