// The cpu engine's determinism and its checks (issue 14). Its agreement with a PyTorch reference
// is tests/node/test_cpu_engine_reference.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "node/checkpoint.h"
#include "node/cpu_engine.h"
#include "node/kv_pages.h"
#include "node/random_model.h"
#include "tests/support/tiny_model.h"

namespace kvstash::node {
namespace {

class CpuEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = testing::TinyLlamaConfig(256);
    model_ = std::make_unique<testing::TinyModelDir>(config_, 5, "node_engine");
    ASSERT_TRUE(model_->status().ok()) << model_->status().ToString();
    auto checkpoint = Checkpoint::Open(model_->path());
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
    checkpoint_ = std::move(*checkpoint);
    std::mt19937_64 rng(3);
    for (int i = 0; i < 70; ++i) prompt_.push_back(static_cast<uint32_t>(rng() % config_.vocab_size));
  }

  std::unique_ptr<CpuEngine> Engine(size_t threads) {
    auto engine = CpuEngine::Load(*checkpoint_, {threads});
    EXPECT_TRUE(engine.ok()) << engine.status().ToString();
    return engine.ok() ? std::move(*engine) : nullptr;
  }
  // Every position's logits, prefilled in chunks of `chunk` tokens on pages of `page_tokens`.
  std::vector<float> Run(CpuEngine& engine, size_t chunk, uint32_t page_tokens) {
    KvPagePool pool(config_, page_tokens, 64);
    auto table = pool.AllocateMany((prompt_.size() + page_tokens - 1) / page_tokens);
    std::vector<float> all, step;
    for (size_t start = 0; start < prompt_.size(); start += chunk) {
      const size_t n = std::min(chunk, prompt_.size() - start);
      EXPECT_TRUE(engine.Forward(std::span(prompt_).subspan(start, n), static_cast<uint32_t>(start), *table, pool,
                                 &step, false)
                      .ok());
      all.insert(all.end(), step.begin(), step.end());
    }
    return all;
  }

  std::unique_ptr<testing::TinyModelDir> model_;
  ModelConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::vector<uint32_t> prompt_;
};

TEST_F(CpuEngineTest, SameBitsWhateverTheThreadsChunksAndPages) {
  auto one = Engine(1), three = Engine(3);
  const std::vector<float> reference = Run(*one, prompt_.size(), 16);
  ASSERT_EQ(reference.size(), prompt_.size() * config_.vocab_size);
  EXPECT_EQ(Run(*three, prompt_.size(), 16), reference);
  EXPECT_EQ(Run(*one, 5, 16), reference);
  EXPECT_EQ(Run(*three, 16, 8), reference);
  EXPECT_EQ(Run(*one, 1, 3), reference);
}

// A prefix's KV taken as bytes into other pages of another pool (as a fetch from the store does)
// gives the same bits for the rest of the prompt as computing everything here.
TEST_F(CpuEngineTest, PrefixKvMovedAsBytesGivesTheSameBits) {
  auto engine = Engine(2);
  constexpr uint32_t kPage = 16;
  constexpr size_t kPrefix = 48;  // three full pages
  const std::vector<float> reference = Run(*engine, prompt_.size(), kPage);

  KvPagePool computed(config_, kPage, 8);
  auto first = computed.AllocateMany(3);
  ASSERT_TRUE(engine->Forward(std::span(prompt_).first(kPrefix), 0, *first, computed, nullptr).ok());

  KvPagePool fresh(config_, kPage, 16);
  (void)fresh.AllocateMany(5);  // other page numbers than the first pool's
  auto table = fresh.AllocateMany(5);
  ASSERT_TRUE(table.has_value());
  std::vector<std::byte> page(computed.page_bytes());
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(computed.ReadPage((*first)[i], page).ok());
    ASSERT_TRUE(fresh.WritePage((*table)[i], page).ok());
  }
  std::vector<float> rest;
  ASSERT_TRUE(engine->Forward(std::span(prompt_).subspan(kPrefix), kPrefix, *table, fresh, &rest, false).ok());
  const std::vector<float> expected(reference.begin() + kPrefix * config_.vocab_size, reference.end());
  EXPECT_EQ(rest, expected);
}

TEST_F(CpuEngineTest, BadStepsAreRefusedAndWriteNothing) {
  auto engine = Engine(1);
  KvPagePool pool(config_, 16, 4);
  auto table = pool.AllocateMany(2);
  std::vector<std::byte> before(pool.page_bytes()), after(pool.page_bytes());
  ASSERT_TRUE(pool.ReadPage((*table)[0], before).ok());
  std::vector<float> logits;
  const std::vector<uint32_t> bad_token = {1, 2, config_.vocab_size};
  EXPECT_EQ(engine->Forward(bad_token, 0, *table, pool, &logits).code(), StatusCode::kInvalidArgument);
  const std::vector<uint32_t> ok_tokens(20, 1);
  EXPECT_EQ(engine->Forward(ok_tokens, 0, std::span(*table).first(1), pool, &logits).code(),
            StatusCode::kInvalidArgument);  // the table covers 16 tokens
  EXPECT_EQ(engine->Forward(ok_tokens, config_.max_position_embeddings - 5, *table, pool, &logits).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Forward({}, 0, *table, pool, &logits).code(), StatusCode::kInvalidArgument);
  const std::vector<uint32_t> outside = {99};
  EXPECT_EQ(engine->Forward(ok_tokens, 0, outside, pool, &logits).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(pool.ReadPage((*table)[0], after).ok());
  EXPECT_EQ(before, after);
}

TEST(KvPagePoolTest, AllocatesFreesAndIgnoresDoubleFrees) {
  ModelConfig c;
  c.hidden_size = 32;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  KvPagePool pool(c, 8, 4);
  EXPECT_EQ(pool.page_bytes(), 2u * 3 * 2 * 8 * 8 * sizeof(float));
  auto all = pool.AllocateMany(4);
  ASSERT_TRUE(all.has_value());
  EXPECT_FALSE(pool.Allocate().has_value());
  EXPECT_FALSE(pool.AllocateMany(1).has_value());
  pool.Free((*all)[1]);
  pool.Free((*all)[1]);
  EXPECT_EQ(pool.free_pages(), 1u);
  EXPECT_EQ(pool.Allocate(), (*all)[1]);
}

}  // namespace
}  // namespace kvstash::node
