// kvstash-node's runtime without a store (issue 14): continuous batching gives each sequence the
// tokens it gets alone, the local prefix cache gives bit-identical results, bad requests are
// refused before anything is queued.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "node/checkpoint.h"
#include "node/cpu_engine.h"
#include "node/random_model.h"
#include "tests/support/tiny_model.h"
#include "node/runtime.h"

namespace kvstash::node {
namespace {

class NodeRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = testing::TinyLlamaConfig(512);
    model_ = std::make_unique<testing::TinyModelDir>(config_, 21, "node_runtime");
    ASSERT_TRUE(model_->status().ok()) << model_->status().ToString();
    auto checkpoint = Checkpoint::Open(model_->path());
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
    checkpoint_ = std::move(*checkpoint);
  }

  std::unique_ptr<NodeRuntime> Start(NodeOptions options = {}) {
    auto engine = CpuEngine::Load(*checkpoint_, {2});
    EXPECT_TRUE(engine.ok());
    options.block_tokens = 32;
    options.page_tokens = 16;
    if (options.pool_pages == 4096) options.pool_pages = 256;
    auto runtime = NodeRuntime::Start(std::move(*engine), nullptr, "test-model", options);
    EXPECT_TRUE(runtime.ok()) << runtime.status().ToString();
    return runtime.ok() ? std::move(*runtime) : nullptr;
  }
  std::vector<uint32_t> Prompt(uint64_t seed, size_t n) {
    std::mt19937_64 rng(seed);
    std::vector<uint32_t> out;
    for (size_t i = 0; i < n; ++i) out.push_back(static_cast<uint32_t>(rng() % config_.vocab_size));
    return out;
  }

  std::unique_ptr<testing::TinyModelDir> model_;
  ModelConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
};

TEST_F(NodeRuntimeTest, ConcurrentRequestsGetTheTokensTheyGetAlone) {
  std::vector<CompletionRequest> requests;
  const std::vector<uint32_t> shared = Prompt(1, 64);
  for (int i = 0; i < 6; ++i) {
    CompletionRequest r;
    r.prompt = i % 2 == 0 ? Prompt(100 + i, 20 + 17 * i) : shared;
    if (i % 2 == 1) r.prompt.push_back(static_cast<uint32_t>(i));  // same two blocks, different tails
    r.sampling.max_tokens = 12 + i;
    if (i >= 3) {
      r.sampling.temperature = 0.8;
      r.sampling.top_p = 0.9;
      r.sampling.seed = 7 + i;
    }
    requests.push_back(r);
  }
  std::vector<std::vector<uint32_t>> alone;
  {
    NodeOptions no_cache;
    no_cache.local_cache = false;
    auto runtime = Start(no_cache);
    for (const auto& r : requests) {
      auto done = runtime->Complete(r);
      ASSERT_TRUE(done.ok()) << done.status().ToString();
      EXPECT_EQ(done->tokens.size(), r.sampling.max_tokens);
      alone.push_back(done->tokens);
    }
  }
  NodeOptions small_chunks;
  small_chunks.max_batch_tokens = 24;  // prefills interleave with the others' decode steps
  auto runtime = Start(small_chunks);
  std::vector<std::future<Result<CompletionResult>>> futures;
  std::vector<std::vector<uint32_t>> streamed(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    auto submitted = runtime->Submit(requests[i], [&streamed, i](uint32_t t) { streamed[i].push_back(t); });
    ASSERT_TRUE(submitted.ok());
    futures.push_back(std::move(*submitted));
  }
  for (size_t i = 0; i < futures.size(); ++i) {
    auto done = futures[i].get();
    ASSERT_TRUE(done.ok()) << done.status().ToString();
    EXPECT_EQ(done->tokens, alone[i]) << "request " << i;
    EXPECT_EQ(streamed[i], done->tokens) << "request " << i;
    EXPECT_EQ(done->finish_reason, "length");
  }
}

TEST_F(NodeRuntimeTest, LocalPrefixCacheGivesTheSameBits) {
  auto runtime = Start();
  CompletionRequest r;
  r.prompt = Prompt(5, 100);
  r.sampling.max_tokens = 8;
  auto first = runtime->Complete(r);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->prompt.computed, 100u);
  auto second = runtime->Complete(r);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->prompt.local, 96u);
  EXPECT_EQ(second->prompt.computed, 4u);
  EXPECT_EQ(second->tokens, first->tokens);
  EXPECT_EQ(second->first_logits, first->first_logits);
  // Part of the chain cached: a prompt sharing one block.
  CompletionRequest partial = r;
  partial.prompt.resize(40);
  auto third = runtime->Complete(partial);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->prompt.local, 32u);
  const auto stats = runtime->Stats();
  EXPECT_EQ(stats.requests_done, 3u);
  EXPECT_EQ(stats.prompt_tokens_local, 128u);
}

TEST_F(NodeRuntimeTest, EosStopsASequence) {
  auto runtime = Start();
  CompletionRequest r;
  r.prompt = Prompt(9, 30);
  r.sampling.max_tokens = 10;
  auto free_run = runtime->Complete(r);
  ASSERT_TRUE(free_run.ok());
  r.sampling.stop_tokens = {free_run->tokens[3]};
  auto stopped = runtime->Complete(r);
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(stopped->finish_reason, "stop");
  const auto first_stop = std::find(free_run->tokens.begin(), free_run->tokens.end(), free_run->tokens[3]);
  EXPECT_EQ(stopped->tokens, std::vector<uint32_t>(free_run->tokens.begin(), first_stop + 1));
}

// A client that goes away: its sequence ends at the next step, its pages return to the pool, and the
// runtime goes on serving the others.
TEST_F(NodeRuntimeTest, CancelledSequenceEndsAndGivesItsPagesBack) {
  auto runtime = Start();
  CompletionRequest r;
  r.prompt = Prompt(11, 50);
  r.sampling.max_tokens = 300;
  r.cancel = std::make_shared<std::atomic<bool>>(false);
  size_t seen = 0;
  auto submitted = runtime->Submit(r, [&](uint32_t) {
    if (++seen == 3) r.cancel->store(true);
  });
  ASSERT_TRUE(submitted.ok());
  auto done = submitted->get();
  EXPECT_EQ(done.status().code(), StatusCode::kCancelled);
  EXPECT_EQ(seen, 3u) << "the sequence ran on after it was cancelled";
  // Cancelled before it was ever admitted.
  CompletionRequest early = r;
  early.cancel = std::make_shared<std::atomic<bool>>(true);
  EXPECT_EQ(runtime->Complete(early).status().code(), StatusCode::kCancelled);
  // Nothing of either is left, and others are served as before.
  CompletionRequest other;
  other.prompt = Prompt(12, 20);
  other.sampling.max_tokens = 4;
  EXPECT_TRUE(runtime->Complete(other).ok());
  const auto stats = runtime->Stats();
  EXPECT_EQ(stats.requests_cancelled, 2u);
  EXPECT_EQ(stats.requests_done, 1u);
  EXPECT_EQ(stats.pool_free_pages, stats.pool_pages);  // no full block was kept: 20 tokens < one block
}

TEST_F(NodeRuntimeTest, BadRequestsAreRefusedAndNothingIsQueued) {
  auto runtime = Start();
  auto refused = [&](CompletionRequest r) { return runtime->Submit(std::move(r)).status().code(); };
  CompletionRequest good;
  good.prompt = Prompt(3, 10);
  CompletionRequest r = good;
  r.prompt.clear();
  EXPECT_EQ(refused(r), StatusCode::kInvalidArgument);
  r = good;
  r.prompt[4] = config_.vocab_size;
  EXPECT_EQ(refused(r), StatusCode::kInvalidArgument);
  r = good;
  r.prompt.assign(config_.max_position_embeddings, 1);
  EXPECT_EQ(refused(r), StatusCode::kInvalidArgument);
  for (double t : {-1.0, std::nan(""), 1000.0}) {
    r = good;
    r.sampling.temperature = t;
    EXPECT_EQ(refused(r), StatusCode::kInvalidArgument) << t;
  }
  r = good;
  r.sampling.top_p = 0;
  EXPECT_EQ(refused(r), StatusCode::kInvalidArgument);
  r = good;
  r.sampling.max_tokens = 0;
  EXPECT_EQ(refused(r), StatusCode::kInvalidArgument);
  r = good;
  r.sampling.stop_tokens = {config_.vocab_size + 5};
  EXPECT_EQ(refused(r), StatusCode::kInvalidArgument);
  const auto stats = runtime->Stats();
  EXPECT_EQ(stats.requests_done + stats.requests_failed + stats.waiting + stats.running, 0u);
  EXPECT_EQ(stats.pool_free_pages, stats.pool_pages);
  // The runtime still serves.
  EXPECT_TRUE(runtime->Complete(good).ok());
  runtime->Drain();
  EXPECT_EQ(refused(good), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace kvstash::node
