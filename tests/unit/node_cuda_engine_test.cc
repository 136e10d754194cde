// The cuda engine against the cpu engine (fp32 math on the same 16-bit weights) on tiny seeded
// models: GQA and MHA, tied embeddings, every supported head_dim's kernel path exercised by one of
// them; chunked prefill; a prefix whose KV comes from other pages; bad steps refused with nothing
// written. Runs only where a CUDA device is present (GTEST_SKIP otherwise: CI has none).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gpu/cuda_util.h"
#include "node/checkpoint.h"
#include "node/cpu_engine.h"
#include "node/cuda_engine.h"
#include "tests/support/tiny_model.h"

namespace kvstash::node {
namespace {

#define SKIP_WITHOUT_GPU()                                                              \
  do {                                                                                  \
    const gpu::DeviceSummary d = gpu::ProbeDevices();                                   \
    if (d.count == 0) GTEST_SKIP() << "no CUDA device: " << d.reason;                  \
  } while (0)

ModelConfig Config(uint32_t hidden, uint32_t heads, uint32_t kv_heads, DType dtype, bool tied) {
  ModelConfig c;
  c.hidden_size = hidden;
  c.num_hidden_layers = 3;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.intermediate_size = hidden * 3;
  c.vocab_size = 211;
  c.max_position_embeddings = 1024;
  c.torch_dtype = dtype;
  c.tie_word_embeddings = tied;
  return c;
}

std::vector<uint32_t> Tokens(size_t n, uint32_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint32_t> t(n);
  for (auto& v : t) v = static_cast<uint32_t>(rng() % vocab);
  return t;
}

std::vector<uint32_t> Table(size_t pages) {
  std::vector<uint32_t> t(pages);
  std::iota(t.begin(), t.end(), 0u);
  return t;
}

std::unique_ptr<KvPagePool> CudaPool(CudaEngine& engine, uint32_t page_tokens, size_t pages) {
  auto memory = engine.AllocatePageMemory(pages * page_tokens * engine.kv_geometry().BytesPerToken());
  EXPECT_TRUE(memory.ok()) << memory.status().ToString();
  auto pool = KvPagePool::Create(engine.kv_geometry(), page_tokens, pages, std::move(*memory));
  EXPECT_TRUE(pool.ok()) << pool.status().ToString();
  // NaN everywhere (0x7fc0 in bf16 and fp16): a read of a page nothing wrote would show.
  std::vector<uint16_t> nan((*pool)->page_bytes() / 2, 0x7fc0);
  for (uint32_t p = 0; p < pages; ++p) EXPECT_TRUE((*pool)->WritePage(p, std::as_bytes(std::span(nan))).ok());
  return std::move(*pool);
}

// ||a - b|| / ||b|| and whether every value is finite.
double RelativeError(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    ref += double(b[i]) * b[i];
  }
  return std::sqrt(diff / ref);
}

struct Case {
  const char* name;
  ModelConfig config;
};

// Every position's logits of a 150-token prompt, prefilled in one step and in chunks of 37, against
// the cpu engine's fp32 computation of the same checkpoint. bf16 activations and KV carry about
// 3 significant digits, so the bound is a 2 % normwise error (measured: see the printed values).
TEST(NodeCudaEngineTest, LogitsMatchTheCpuEngine) {
  SKIP_WITHOUT_GPU();
  const Case cases[] = {
      {"gqa bf16 hd32", Config(128, 4, 2, DType::kBF16, false)},
      {"mha bf16 hd64 tied", Config(256, 4, 4, DType::kBF16, true)},
      {"gqa fp16 hd16", Config(64, 4, 1, DType::kF16, false)},
      {"gqa f32->bf16 hd128", Config(256, 2, 1, DType::kF32, false)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    testing::TinyModelDir dir(c.config, 5, "cuda_engine");
    ASSERT_TRUE(dir.status().ok()) << dir.status().ToString();
    auto ckpt = Checkpoint::Open(dir.path());
    ASSERT_TRUE(ckpt.ok());
    auto cpu = CpuEngine::Load(**ckpt, {2});
    ASSERT_TRUE(cpu.ok());
    auto gpu = CudaEngine::Load(**ckpt);
    ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
    EXPECT_EQ((*gpu)->kv_geometry().element_bytes, 2u);
    const auto tokens = Tokens(150, c.config.vocab_size, 3);
    KvPagePool cpu_pool(c.config, 16, 10);
    std::vector<float> want, got, chunked, step;
    ASSERT_TRUE((*cpu)->Forward(tokens, 0, Table(10), cpu_pool, &want, false).ok());
    auto pool = CudaPool(**gpu, 16, 10);
    ASSERT_TRUE((*gpu)->Forward(tokens, 0, Table(10), *pool, &got, false).ok());
    auto pool2 = CudaPool(**gpu, 16, 10);
    for (size_t at = 0; at < tokens.size(); at += 37) {
      const size_t n = std::min<size_t>(37, tokens.size() - at);
      ASSERT_TRUE((*gpu)->Forward(std::span(tokens).subspan(at, n), static_cast<uint32_t>(at), Table(10), *pool2, &step,
                                  false)
                      .ok());
      chunked.insert(chunked.end(), step.begin(), step.end());
    }
    ASSERT_EQ(got.size(), want.size());
    ASSERT_EQ(chunked.size(), want.size());
    const double one_shot = RelativeError(got, want), in_chunks = RelativeError(chunked, want);
    std::printf("%s: relative error one-shot %.2e, chunked %.2e\n", c.name, one_shot, in_chunks);
    EXPECT_LT(one_shot, 2e-2);
    EXPECT_LT(in_chunks, 2e-2);
    // The greedy choice agrees wherever the cpu engine's top two logits are further apart than
    // twice the row's largest difference between the engines.
    const size_t vocab = c.config.vocab_size;
    for (size_t t = 0; t < tokens.size(); ++t) {
      std::vector<float> row(want.begin() + t * vocab, want.begin() + (t + 1) * vocab);
      const size_t best = std::max_element(row.begin(), row.end()) - row.begin();
      float max_diff = 0;
      for (size_t i = 0; i < vocab; ++i) max_diff = std::max(max_diff, std::abs(row[i] - got[t * vocab + i]));
      std::vector<float> sorted = row;
      std::sort(sorted.rbegin(), sorted.rend());
      if (sorted[0] - sorted[1] <= 2 * max_diff) continue;
      const size_t mine = std::max_element(got.begin() + t * vocab, got.begin() + (t + 1) * vocab) -
                          (got.begin() + t * vocab);
      EXPECT_EQ(mine, best) << "position " << t;
    }
  }
}

// A prefix whose KV bytes were computed by another run and copied into other pages (as a fetch
// from the store does) gives the same greedy continuation as computing everything.
TEST(NodeCudaEngineTest, PrefixFromOtherPagesGivesTheSameTokens) {
  SKIP_WITHOUT_GPU();
  const ModelConfig config = Config(128, 4, 2, DType::kBF16, false);
  testing::TinyModelDir dir(config, 9, "cuda_prefix");
  ASSERT_TRUE(dir.status().ok());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok());
  auto engine = CudaEngine::Load(**ckpt);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  CudaEngine& e = **engine;
  const auto prompt = Tokens(200, config.vocab_size, 4);
  const size_t pages = 16, prefix_pages = 8;  // 128 of 200 tokens cached
  auto generate = [&](KvPagePool& pool, const std::vector<uint32_t>& table, size_t from) {
    std::vector<float> logits;
    EXPECT_TRUE(e.Forward(std::span(prompt).subspan(from), static_cast<uint32_t>(from), table, pool, &logits).ok());
    std::vector<uint32_t> out;
    for (int i = 0; i < 20; ++i) {
      out.push_back(static_cast<uint32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
      EXPECT_TRUE(e.Forward(std::span(&out.back(), 1), static_cast<uint32_t>(prompt.size() + i), table, pool, &logits).ok());
    }
    return out;
  };
  auto whole = CudaPool(e, 16, pages);
  const auto uncached = generate(*whole, Table(pages), 0);
  auto other = CudaPool(e, 16, pages);
  std::vector<uint32_t> shuffled = Table(pages);
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(1));
  std::vector<std::byte> bytes(whole->page_bytes());
  for (size_t p = 0; p < prefix_pages; ++p) {
    ASSERT_TRUE(whole->ReadPage(static_cast<uint32_t>(p), bytes).ok());
    ASSERT_TRUE(other->WritePage(shuffled[p], bytes).ok());
  }
  EXPECT_EQ(generate(*other, shuffled, prefix_pages * 16), uncached);
}

TEST(NodeCudaEngineTest, BadStepsAreRefusedAndWriteNothing) {
  SKIP_WITHOUT_GPU();
  ModelConfig config = Config(128, 4, 2, DType::kBF16, false);
  config.max_position_embeddings = 64;
  testing::TinyModelDir dir(config, 2, "cuda_bad");
  ASSERT_TRUE(dir.status().ok());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok());
  auto engine = CudaEngine::Load(**ckpt);
  ASSERT_TRUE(engine.ok());
  CudaEngine& e = **engine;
  auto pool = CudaPool(e, 16, 4);
  std::vector<std::byte> before(pool->page_bytes()), after(pool->page_bytes());
  ASSERT_TRUE(pool->ReadPage(0, before).ok());
  std::vector<float> logits;
  const std::vector<uint32_t> ok_tokens = {1, 2, 3};
  auto code = [](const Status& s) { return s.code(); };
  EXPECT_EQ(code(e.Forward({}, 0, Table(4), *pool, &logits)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(e.Forward(std::vector<uint32_t>{1, 211}, 0, Table(4), *pool, &logits)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(e.Forward(ok_tokens, 62, Table(4), *pool, &logits)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(e.Forward(ok_tokens, 15, Table(1), *pool, &logits)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(e.Forward(ok_tokens, 0, std::vector<uint32_t>{0, 9}, *pool, &logits)), StatusCode::kInvalidArgument);
  KvPagePool host_pool(config, 16, 4);  // fp32 host pages: not this engine's
  EXPECT_EQ(code(e.Forward(ok_tokens, 0, Table(4), host_pool, &logits)), StatusCode::kInvalidArgument);
  EXPECT_TRUE(logits.empty());
  ASSERT_TRUE(pool->ReadPage(0, after).ok());
  EXPECT_EQ(before, after);
  EXPECT_TRUE(e.Forward(ok_tokens, 0, Table(4), *pool, &logits).ok());
  EXPECT_EQ(logits.size(), config.vocab_size);
}

TEST(NodeCudaEngineTest, UnsupportedHeadDimIsRefusedAtLoad) {
  SKIP_WITHOUT_GPU();
  const ModelConfig config = Config(96, 2, 1, DType::kBF16, false);  // head_dim 48
  testing::TinyModelDir dir(config, 2, "cuda_hd48");
  ASSERT_TRUE(dir.status().ok());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok());
  auto engine = CudaEngine::Load(**ckpt);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvstash::node
