// kvstash-node's prefix reuse through a live kvstashd (issue 14): the KV of a prompt's full blocks
// is stored from one page pool and fetched into another, and the rest of the prompt computed from
// the fetched KV gives bit-identical logits to computing all of it. A block that is missing, of the
// wrong size, or unreachable ends the fetched prefix and is recomputed: the output never changes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>

#include "kvstash/client.h"
#include "kvstash/prefix_hasher.h"
#include "node/checkpoint.h"
#include "node/cpu_engine.h"
#include "node/kv_block_store.h"
#include "node/kv_pages.h"
#include "node/random_model.h"
#include "tests/support/tiny_model.h"
#include "node/runtime.h"
#include "tests/support/daemon_process.h"

namespace kvstash::node {
namespace {

constexpr uint32_t kPageTokens = 16, kBlockTokens = 32;

class NodePrefixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = testing::TinyLlamaConfig(512);
    model_ = std::make_unique<testing::TinyModelDir>(config_, 9, "node_prefix");
    ASSERT_TRUE(model_->status().ok()) << model_->status().ToString();
    auto checkpoint = Checkpoint::Open(model_->path());
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
    checkpoint_ = std::move(*checkpoint);
    auto engine = CpuEngine::Load(*checkpoint_, {2});
    ASSERT_TRUE(engine.ok());
    engine_ = std::move(*engine);
    std::mt19937_64 rng(17);
    for (int i = 0; i < 100; ++i) prompt_.push_back(static_cast<uint32_t>(rng() % config_.vocab_size));
    const auto id = checkpoint_->Identity();
    hasher_ = std::make_unique<PrefixHasher>(std::string(reinterpret_cast<const char*>(id.data()), id.size()) +
                                                 "|paged16|fp32",
                                             kBlockTokens);
    chain_ = hasher_->Chain(prompt_);
    ASSERT_EQ(chain_.size(), 3u);

    daemon_ = std::make_unique<testing::DaemonProcess>(KVSTASHD_PATH, std::vector<std::string>{"--dram-capacity", "64MiB"});
    ASSERT_TRUE(daemon_->ok()) << daemon_->error();
    ClientOptions options;
    options.address = daemon_->grpc_address();
    options.timeout_ms = 5'000;
    auto client = Client::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(*client);
  }

  // The logits of positions [from, 100) computed in `pool` after the first `from` tokens' KV is
  // already in `table`'s pages.
  std::vector<float> Rest(size_t from, std::span<const uint32_t> table, KvPagePool& pool) {
    std::vector<float> logits;
    EXPECT_TRUE(engine_->Forward(std::span(prompt_).subspan(from), static_cast<uint32_t>(from), table, pool, &logits,
                                 false)
                    .ok());
    return logits;
  }
  // A pool whose pages hold NaN, so that any page the fetch failed to fill shows.
  std::unique_ptr<KvPagePool> PoisonedPool() {
    auto pool = std::make_unique<KvPagePool>(config_, kPageTokens, 16);
    std::vector<std::byte> bytes(pool->page_bytes());
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (size_t i = 0; i + sizeof(float) <= bytes.size(); i += sizeof(float)) std::memcpy(bytes.data() + i, &nan, 4);
    for (uint32_t p = 0; p < 16; ++p) EXPECT_TRUE(pool->WritePage(p, bytes).ok());
    return pool;
  }
  // Fetches what the store has, computes the rest, and returns the rest's logits with the count.
  std::pair<FetchResult, std::vector<float>> Serve() {
    auto pool = PoisonedPool();
    (void)pool->AllocateMany(3);  // other page numbers than the writer's
    auto table = pool->AllocateMany(7);
    KvBlockStore store(*client_, *pool, kBlockTokens);
    const FetchResult fetched = store.FetchPrefix(chain_, chain_.size(), *table, *pool, 2'000);
    const size_t from = fetched.blocks * kBlockTokens;
    std::vector<float> logits = Rest(from, *table, *pool);
    // Only the positions after the full prompt's cached part are compared: the rows for [from, 96)
    // are computed here and would be equal anyway.
    logits.erase(logits.begin(), logits.begin() + static_cast<long>((96 - from) * config_.vocab_size));
    return {fetched, logits};
  }

  std::unique_ptr<testing::TinyModelDir> model_;
  ModelConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<CpuEngine> engine_;
  std::vector<uint32_t> prompt_;
  std::unique_ptr<PrefixHasher> hasher_;
  std::vector<BlockKey> chain_;
  std::unique_ptr<testing::DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
};

TEST_F(NodePrefixTest, PrefixFromTheStoreGivesBitIdenticalLogits) {
  // The writer: everything computed here, its full blocks stored.
  KvPagePool pool(config_, kPageTokens, 8);
  auto table = pool.AllocateMany(7);
  const std::vector<float> everything = Rest(0, *table, pool);
  const std::vector<float> tail(everything.begin() + 96 * config_.vocab_size, everything.end());
  KvBlockStore writer(*client_, pool, kBlockTokens);
  auto put = writer.Store(chain_, 0, chain_.size(), *table, pool);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->stored, 3u);

  auto [all, logits] = Serve();
  EXPECT_EQ(all.blocks, 3u);
  EXPECT_EQ(logits, tail) << "logits after a fetched prefix differ from computing the whole prompt";

  // Only part of the chain cached: the rest is computed, the output is the same.
  const BlockKey later[] = {chain_[1], chain_[2]};
  ASSERT_TRUE(client_->Remove(later).ok());
  auto [part, partial_logits] = Serve();
  EXPECT_EQ(part.blocks, 1u);
  EXPECT_EQ(partial_logits, tail);

  // A block of the wrong size under a chain key is refused and recomputed.
  std::vector<std::byte> short_block(writer.block_bytes() / 2, std::byte{0x3F});
  PutItem bad{chain_[1], chain_[0], short_block};
  ASSERT_TRUE(client_->Put(std::span(&bad, 1)).ok());
  auto [wrong, wrong_logits] = Serve();
  EXPECT_EQ(wrong.blocks, 1u);
  EXPECT_EQ(wrong.rejected, 1u);
  EXPECT_EQ(wrong_logits, tail);

  // The store gone: recompute, not an error.
  daemon_->Stop();
  auto [down, down_logits] = Serve();
  EXPECT_EQ(down.blocks, 0u);
  EXPECT_TRUE(down.store_down);
  EXPECT_EQ(down_logits, tail);
}

// Two runtimes on one store, as two nodes: the second serves the first's prompt with its prefix
// fetched from the store, and produces the same tokens and the same first logits, bit for bit.
TEST_F(NodePrefixTest, SecondNodeServesThePrefixFromTheStore) {
  NodeOptions options;
  options.block_tokens = kBlockTokens;
  options.page_tokens = kPageTokens;
  options.pool_pages = 64;
  const auto id = checkpoint_->Identity();
  const std::string ns = std::string(reinterpret_cast<const char*>(id.data()), id.size()) + "|paged16|fp32";
  auto start = [&] {
    auto engine = CpuEngine::Load(*checkpoint_, {2});
    EXPECT_TRUE(engine.ok());
    auto runtime = NodeRuntime::Start(std::move(*engine), client_.get(), ns, options);
    EXPECT_TRUE(runtime.ok()) << runtime.status().ToString();
    return std::move(*runtime);
  };
  CompletionRequest request;
  request.prompt = prompt_;
  request.sampling.max_tokens = 10;
  auto first_node = start();
  auto first = first_node->Complete(request);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->prompt.computed, 100u);
  first_node->Drain();  // its blocks are in the store once the background puts are done
  const size_t block_bytes = KvPagePool(config_, kPageTokens, 1).page_bytes() * (kBlockTokens / kPageTokens);
  EXPECT_EQ(first_node->Stats().kv_bytes_stored, 3 * block_bytes);

  auto second_node = start();
  auto second = second_node->Complete(request);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->prompt.store, 96u);
  EXPECT_EQ(second->prompt.local, 0u);
  EXPECT_EQ(second->prompt.computed, 4u);
  EXPECT_EQ(second->tokens, first->tokens);
  EXPECT_EQ(second->first_logits, first->first_logits);
  // Again on the second node: now from its own cache.
  auto third = second_node->Complete(request);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->prompt.local, 96u);
  EXPECT_EQ(third->tokens, first->tokens);

  // The store down: a third node computes everything, and says so.
  daemon_->Stop();
  auto lonely = start();
  auto computed = lonely->Complete(request);
  ASSERT_TRUE(computed.ok()) << computed.status().ToString();
  EXPECT_EQ(computed->prompt.computed, 100u);
  EXPECT_EQ(computed->tokens, first->tokens);
  EXPECT_GE(lonely->Stats().store_errors, 1u);
}

}  // namespace
}  // namespace kvstash::node
