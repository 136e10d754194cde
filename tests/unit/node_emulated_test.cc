// The emulated engine (issue 14): true KV sizes, content that is a function of the prefix (and so
// verifiable from the tokens), tokens that depend on the KV in the pages, the cost model's time,
// and the same refusals as the cpu engine. Also the runtime on it: local-cache reuse gives the same
// tokens, and its load report.
#include <gtest/gtest.h>

#include <chrono>
#include <random>

#include "node/emulated_engine.h"
#include "node/runtime.h"
#include "tests/support/eventually.h"
#include "tests/support/tiny_model.h"

namespace kvstash::node {
namespace {

ModelConfig Fp16Config() {
  ModelConfig c = testing::TinyLlamaConfig(4096);
  c.torch_dtype = DType::kF16;
  return c;
}

// LLaMA-2-70B's published shape.
ModelConfig Llama70B() {
  ModelConfig c;
  c.hidden_size = 8192;
  c.num_hidden_layers = 80;
  c.num_attention_heads = 64;
  c.num_key_value_heads = 8;
  c.intermediate_size = 28672;
  c.vocab_size = 32000;
  c.max_position_embeddings = 4096;
  c.torch_dtype = DType::kF16;
  return c;
}

std::unique_ptr<EmulatedEngine> Emulated(double time_scale = 0) {
  EmulatedOptions o;
  o.time_scale = time_scale;
  return EmulatedEngine::Create(Fp16Config(), o, 32).value();
}

std::unique_ptr<KvPagePool> Pool(const EmulatedEngine& engine, uint32_t page_tokens, size_t pages) {
  const KvGeometry g = engine.kv_geometry();
  return KvPagePool::Create(g, page_tokens, pages, AllocateHostPageMemory(pages * page_tokens * g.BytesPerToken()).value())
      .value();
}

std::vector<uint32_t> Prompt(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint32_t> p(n);
  for (auto& t : p) t = rng() % 97;
  return p;
}

std::vector<std::byte> PagesOf(KvPagePool& pool, std::span<const uint32_t> pages) {
  std::vector<std::byte> out(pages.size() * pool.page_bytes());
  for (size_t i = 0; i < pages.size(); ++i) {
    EXPECT_TRUE(pool.ReadPage(pages[i], std::span(out).subspan(i * pool.page_bytes(), pool.page_bytes())).ok());
  }
  return out;
}

// Pages of 16 tokens, blocks of 32, 64 pages: room for a few short requests and their cached blocks.
NodeOptions SmallPool() {
  NodeOptions o;
  o.page_tokens = 16;
  o.block_tokens = 32;
  o.pool_pages = 64;
  return o;
}

size_t ArgMax(const std::vector<float>& v) { return std::max_element(v.begin(), v.end()) - v.begin(); }

TEST(EmulatedEngineTest, KvHasTheModelsTrueSize) {
  auto engine = Emulated();
  const ModelConfig c = Fp16Config();
  EXPECT_EQ(engine->kv_geometry().element_bytes, 2u);
  EXPECT_EQ(engine->kv_geometry().BytesPerToken(), 2ull * c.num_hidden_layers * c.num_key_value_heads * c.head_dim() * 2);
  // LLaMA-2-70B: 80 layers × K,V × 8 KV heads × 128 × 2 bytes = 320 KiB per token.
  const scheduler::ModelSpec spec = SpecFromConfig(Llama70B(), scheduler::ModelSpec{}, 512);
  EXPECT_EQ(spec.KvBytesPerToken(), 327680u);
  EXPECT_NEAR(spec.params, 69e9, 0.02 * 69e9);  // 68.98e9 by the published count
  EXPECT_EQ(spec.gqa, 8u);
}

TEST(EmulatedEngineTest, ContentIsAFunctionOfThePrefixAndVerifiable) {
  auto engine = Emulated();
  const std::vector<uint32_t> prompt = Prompt(100, 1);
  auto whole = Pool(*engine, 16, 8);
  auto table = *whole->AllocateMany(7);
  std::vector<float> logits;
  ASSERT_TRUE(engine->Forward(prompt, 0, table, *whole, &logits).ok());
  // The same prompt in chunks, on other pages, gives the same bytes and the same next token.
  auto chunked = Pool(*engine, 16, 16);
  (void)chunked->AllocateMany(5);
  auto table2 = *chunked->AllocateMany(7);
  std::vector<float> logits2;
  ASSERT_TRUE(engine->Forward(std::span(prompt).first(37), 0, table2, *chunked, nullptr).ok());
  ASSERT_TRUE(engine->Forward(std::span(prompt).subspan(37), 37, table2, *chunked, &logits2).ok());
  EXPECT_EQ(ArgMax(logits), ArgMax(logits2));
  const auto first_block = std::span(table).first(2);
  const auto first_block2 = std::span(table2).first(2);
  EXPECT_EQ(PagesOf(*whole, first_block), PagesOf(*chunked, first_block2));
  // ExpectedBlock recomputes a block's bytes from the tokens alone.
  EXPECT_EQ(engine->ExpectedBlock(prompt, 0, 32, 16), PagesOf(*whole, first_block));
  EXPECT_EQ(engine->ExpectedBlock(prompt, 2, 32, 16), PagesOf(*whole, std::span(table).subspan(4, 2)));
  // Another prompt that differs in its first token differs in every block.
  std::vector<uint32_t> other = prompt;
  other[0] = (other[0] + 1) % 97;
  EXPECT_NE(engine->ExpectedBlock(other, 2, 32, 16), engine->ExpectedBlock(prompt, 2, 32, 16));
}

TEST(EmulatedEngineTest, WrongKvInThePagesChangesTheTokens) {
  auto engine = Emulated();
  const std::vector<uint32_t> prompt = Prompt(64, 2);
  auto pool = Pool(*engine, 16, 8);
  auto table = *pool->AllocateMany(5);
  ASSERT_TRUE(engine->Forward(std::span(prompt).first(48), 0, table, *pool, nullptr).ok());
  std::vector<float> right;
  ASSERT_TRUE(engine->Forward(std::span(prompt).subspan(48), 48, table, *pool, &right).ok());
  // The prefix's KV replaced by another prompt's: the continuation sees it.
  std::vector<uint32_t> other = Prompt(64, 3);
  ASSERT_TRUE(engine->Forward(std::span(other).first(48), 0, table, *pool, nullptr).ok());
  std::vector<float> wrong;
  ASSERT_TRUE(engine->Forward(std::span(prompt).subspan(48), 48, table, *pool, &wrong).ok());
  EXPECT_NE(ArgMax(right), ArgMax(wrong));
}

TEST(EmulatedEngineTest, BadStepsAreRefusedAndWriteNothing) {
  auto engine = Emulated();
  auto pool = Pool(*engine, 16, 4);
  auto table = *pool->AllocateMany(2);
  const std::vector<std::byte> before = PagesOf(*pool, table);
  std::vector<float> logits;
  EXPECT_EQ(engine->Forward(std::vector<uint32_t>{1, 97}, 0, table, *pool, &logits).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Forward(std::vector<uint32_t>(20, 1), 0, std::span(table).first(1), *pool, &logits).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Forward(std::vector<uint32_t>(20, 1), 4090, table, *pool, &logits).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Forward({}, 0, table, *pool, &logits).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Forward(std::vector<uint32_t>{1}, 0, std::vector<uint32_t>{99}, *pool, &logits).code(),
            StatusCode::kInvalidArgument);
  KvPagePool fp32(Fp16Config(), 16, 2);  // the cpu engine's geometry: not this engine's pages
  EXPECT_EQ(engine->Forward(std::vector<uint32_t>{1}, 0, std::vector<uint32_t>{0}, fp32, &logits).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(PagesOf(*pool, table), before);
  EmulatedOptions bad;
  bad.time_scale = -1;
  EXPECT_EQ(EmulatedEngine::Create(Fp16Config(), bad, 32).status().code(), StatusCode::kInvalidArgument);
  bad.time_scale = 1;
  bad.hardware.mfu = 0;
  EXPECT_EQ(EmulatedEngine::Create(Fp16Config(), bad, 32).status().code(), StatusCode::kInvalidArgument);
}

TEST(EmulatedEngineTest, StepsTakeTheCostModelsTime) {
  auto engine = Emulated(1.0);
  const scheduler::CostModel& cost = engine->cost_model();
  StepShape step;
  step.prefill.push_back({4000, 1000});
  step.decode_sequences = 3;
  step.decode_context_tokens = 900;
  const double predicted = cost.PrefillSeconds(5000, 1000) + cost.DecodeStepSeconds(3, 900);
  EXPECT_DOUBLE_EQ(engine->PredictSeconds(step), predicted);
  ASSERT_GT(predicted, 0);
  // A step is at least its predicted time long, counted from its first Forward.
  auto pool = Pool(*engine, 16, 4);
  auto table = *pool->AllocateMany(1);
  StepShape one;
  one.prefill.push_back({1, 0});
  const auto began = std::chrono::steady_clock::now();
  ASSERT_TRUE(engine->Forward(std::vector<uint32_t>{5}, 0, table, *pool, nullptr).ok());
  engine->FinishStep(one);
  EXPECT_GE(std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count(),
            engine->PredictSeconds(one));
}

TEST(EmulatedRuntimeTest, LocalCacheReuseGivesTheSameTokensAndLoadIsReported) {
  std::vector<std::pair<std::vector<BlockKey>, std::vector<BlockKey>>> events;
  NodeOptions o = SmallPool();
  o.kv_events = [&](std::vector<BlockKey> stored, std::vector<BlockKey> evicted) {
    events.emplace_back(std::move(stored), std::move(evicted));
  };
  auto runtime = NodeRuntime::Start(Emulated(), nullptr, "emulated-test", o).value();
  CompletionRequest req;
  req.prompt = Prompt(100, 4);
  req.sampling.max_tokens = 8;
  Result<CompletionResult> first = runtime->Complete(req);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  Result<CompletionResult> second = runtime->Complete(req);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(first->tokens, second->tokens);
  EXPECT_EQ(second->prompt.local, 96u);
  // The three full blocks joined the local cache once.
  size_t stored = 0;
  for (const auto& e : events) stored += e.first.size();
  EXPECT_EQ(stored, 3u);
  // The step that finished the request publishes the load after the request's result.
  ASSERT_TRUE(testing::Eventually([&] { return runtime->Load().sequences.empty(); }, std::chrono::seconds(10)));
  const RuntimeLoad idle = runtime->Load();
  EXPECT_EQ(idle.queued_prefill_tokens, 0u);
  EXPECT_GT(idle.prefill_seconds_per_token, 0);
}

}  // namespace
}  // namespace kvstash::node

namespace kvstash::node {
namespace {

TEST(EmulatedEngineTest, KvBytesScaleShrinksEachHeadAndKeepsContentVerifiable) {
  EmulatedOptions o;
  o.time_scale = 0;
  o.kv_bytes_scale = 0.25;
  auto engine = EmulatedEngine::Create(Fp16Config(), o, 32).value();
  EXPECT_EQ(engine->kv_geometry().head_dim, Fp16Config().head_dim() / 4);
  EXPECT_EQ(engine->kv_geometry().BytesPerToken() * 4, Emulated()->kv_geometry().BytesPerToken());
  const std::vector<uint32_t> prompt = Prompt(64, 9);
  auto pool = Pool(*engine, 16, 4);
  auto table = *pool->AllocateMany(4);
  // In two chunks: the second reads the first's last seed back from the shrunken pages.
  ASSERT_TRUE(engine->Forward(std::span(prompt).first(40), 0, table, *pool, nullptr).ok());
  ASSERT_TRUE(engine->Forward(std::span(prompt).subspan(40), 40, table, *pool, nullptr).ok());
  EXPECT_EQ(engine->ExpectedBlock(prompt, 1, 32, 16), PagesOf(*pool, std::span(table).subspan(2, 2)));
  o.kv_bytes_scale = 0;
  EXPECT_EQ(EmulatedEngine::Create(Fp16Config(), o, 32).status().code(), StatusCode::kInvalidArgument);
  o.kv_bytes_scale = 1.5;
  EXPECT_EQ(EmulatedEngine::Create(Fp16Config(), o, 32).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvstash::node

namespace kvstash::node {
namespace {

// The "store off" baseline: without prefix reuse the same prompt is computed again, with the same
// tokens, although its blocks are in the local cache.
TEST(EmulatedRuntimeTest, WithoutPrefixReuseEveryPromptIsComputed) {
  NodeOptions o = SmallPool();
  o.reuse_prefixes = false;
  auto runtime = NodeRuntime::Start(Emulated(), nullptr, "emulated-test", o).value();
  CompletionRequest req;
  req.prompt = Prompt(100, 6);
  req.sampling.max_tokens = 4;
  Result<CompletionResult> first = runtime->Complete(req);
  Result<CompletionResult> second = runtime->Complete(req);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->tokens, second->tokens);
  EXPECT_EQ(second->prompt.local, 0u);
  EXPECT_EQ(second->prompt.computed, 100u);
  EXPECT_GT(runtime->Stats().cached_blocks, 0u);  // kept, just not used
}

}  // namespace
}  // namespace kvstash::node

namespace kvstash::node {
namespace {

// A token is passed on only once the step that chose it has taken its modelled time: the TTFT of a
// one-chunk prompt is at least the cost model's prefill time, the first token's callback included.
TEST(EmulatedRuntimeTest, TheFirstTokenComesAfterThePrefillsModelledTime) {
  NodeOptions o = SmallPool();
  StepShape prefill;
  prefill.prefill.push_back({200, 0});
  const double predicted = Emulated(1.0)->PredictSeconds(prefill);
  ASSERT_GT(predicted, 0);
  auto runtime = NodeRuntime::Start(Emulated(1.0), nullptr, "emulated-test", o).value();
  CompletionRequest req;
  req.prompt = Prompt(200, 8);
  req.sampling.max_tokens = 2;
  const auto submitted = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point first_seen{};
  auto future = runtime->Submit(req, [&](uint32_t) {
    if (first_seen == std::chrono::steady_clock::time_point{}) first_seen = std::chrono::steady_clock::now();
  });
  ASSERT_TRUE(future.ok());
  Result<CompletionResult> done = future->get();
  ASSERT_TRUE(done.ok());
  EXPECT_GE(done->ttft_seconds, predicted);
  EXPECT_GE(std::chrono::duration<double>(first_seen - submitted).count(), predicted);
}

}  // namespace
}  // namespace kvstash::node
