// kvstash-bench-node: time to first token of kvstash-node's cpu engine with 0 / 50 / 90 % of the
// prompt's prefix in a live kvstashd, against recomputing the same prompt — and beside each
// figure its limits measured in the same run: the fetched KV bytes at memcpy speed (what moving
// them can cost at best on this host) and the prefill's arithmetic at the rate the engine's own
// matrix products reach here (what computing them costs).
//
// A fresh node (runtime, local cache off) serves each row, so every reused token comes from the
// store. The store is seeded by another node that computes exactly the cached prefix first.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "kvstash/client.h"
#include "node/checkpoint.h"
#include "node/cpu_engine.h"
#include "node/random_model.h"
#include "node/runtime.h"
#include "tests/support/daemon_process.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace kvstash;
using namespace kvstash::node;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

// Prefill FLOPs of tokens [p, n) of the model: matrix products plus attention (2 per multiply-add).
double PrefillFlops(const ModelConfig& c, double n, double p) {
  const double h = c.hidden_size, kv = c.num_key_value_heads * c.head_dim(), i = c.intermediate_size;
  const double per_token_linear = 2 * (h * h + 2 * h * kv + h * h + 3 * h * i);
  const double attention = 2 * 2 * h * (n * n - p * p) / 2;  // QK and PV over the causal triangle
  return c.num_hidden_layers * (per_token_linear * (n - p) + attention);
}

double MemcpySeconds(size_t bytes) {
  std::vector<std::byte> src(bytes, std::byte{1}), dst(bytes);
  const auto start = Clock::now();
  std::memcpy(dst.data(), src.data(), bytes);
  return Seconds(start);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvstash-bench-node: TTFT with the prefix in kvstashd vs recomputing, on the cpu engine"};
  std::string kvstashd = KVSTASHD_PATH;
  std::vector<uint32_t> prompts = {1024, 2048, 4096};
  std::vector<uint32_t> hits = {0, 50, 90};
  uint32_t hidden = 128, layers = 4, heads = 4, kv_heads = 2, block_tokens = 512;
  size_t threads = 2;
  app.add_option("--kvstashd", kvstashd, "daemon binary");
  app.add_option("--prompt-tokens", prompts, "prompt lengths")->delimiter(',');
  app.add_option("--hit-percent", hits, "share of the prompt's full blocks already in the store")->delimiter(',');
  app.add_option("--hidden", hidden, "model width");
  app.add_option("--layers", layers, "model depth");
  app.add_option("--threads", threads, "engine threads");
  app.add_option("--block-tokens", block_tokens, "the store's block size");
  CLI11_PARSE(app, argc, argv);

  ModelConfig config;
  config.hidden_size = hidden;
  config.num_hidden_layers = layers;
  config.num_attention_heads = heads;
  config.num_key_value_heads = kv_heads;
  config.intermediate_size = hidden * 3;
  config.vocab_size = 1000;
  config.max_position_embeddings = *std::max_element(prompts.begin(), prompts.end()) + 16;
  const auto dir = std::filesystem::temp_directory_path() / ("kvstash_bench_node_" + std::to_string(::getpid()));
  if (Status made = MakeRandomModel(config, 1, dir); !made.ok()) {
    std::fprintf(stderr, "%s\n", made.ToString().c_str());
    return 1;
  }
  auto checkpoint = Checkpoint::Open(dir);
  if (!checkpoint.ok()) return 1;
  testing::DaemonProcess daemon(kvstashd, {"--dram-capacity", "4GiB"});
  if (!daemon.ok()) {
    std::fprintf(stderr, "kvstashd did not start: %s\n", daemon.error().c_str());
    return 1;
  }
  ClientOptions client_options;
  client_options.address = daemon.grpc_address();
  auto client = Client::Connect(client_options);
  if (!client.ok()) return 1;
  const auto id = (*checkpoint)->Identity();
  const std::string ns = std::string(reinterpret_cast<const char*>(id.data()), id.size()) + "|paged16|fp32";
  NodeOptions options;
  options.block_tokens = block_tokens;
  options.local_cache = false;
  options.pool_pages = config.max_position_embeddings / options.page_tokens + 64;
  // The seeder stores what it computes; the measured node stores nothing, so each row starts
  // from exactly the blocks its seeder put.
  auto start_node = [&](bool store_puts) {
    NodeOptions o = options;
    o.store_puts = store_puts;
    auto engine = CpuEngine::Load(**checkpoint, {threads});
    Result<std::unique_ptr<NodeRuntime>> runtime = NodeRuntime::Start(std::move(*engine), client->get(), ns, o);
    return std::unique_ptr<NodeRuntime>(std::move(*runtime));
  };
  auto empty_store = [&] {
    while (true) {
      auto listing = (*client)->List(std::nullopt, 1000);
      if (!listing.ok() || listing->blocks.empty()) return;
      std::vector<BlockKey> keys;
      for (const auto& b : listing->blocks) keys.push_back(b.key);
      if (!(*client)->Remove(keys).ok()) return;
    }
  };
  const size_t kv_bytes_per_token = 2 * size_t{config.num_hidden_layers} * config.num_key_value_heads * config.head_dim() * 4;
  std::printf("kvstash-bench-node: model hidden %u, %u layers, %u/%u heads, fp32 KV %zu B/token; block %u tokens; "
              "%zu engine threads; data path %s\n",
              hidden, layers, heads, kv_heads, kv_bytes_per_token, block_tokens, threads,
              (*client)->data_path().c_str());
  std::printf("| prompt | in store | TTFT | recompute TTFT | speed-up | fetched KV | fetched at memcpy | computed tokens at the engine's rate | engine GFLOP/s |\n");
  std::printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  std::mt19937_64 rng(5);
  for (uint32_t n : prompts) {
    std::vector<uint32_t> prompt(n);
    for (auto& t : prompt) t = static_cast<uint32_t>(rng() % config.vocab_size);
    double recompute = 0, engine_rate = 0;
    for (uint32_t hit : hits) {
      const size_t full_blocks = (n - 1) / block_tokens;
      const size_t cached_blocks = full_blocks * hit / 100;
      if (cached_blocks > 0) {
        // Seed the store: a node computes exactly the cached prefix (plus one token) and stores it.
        auto seeder = start_node(true);
        CompletionRequest seed_request;
        seed_request.prompt.assign(prompt.begin(), prompt.begin() + static_cast<long>(cached_blocks * block_tokens + 1));
        seed_request.sampling.max_tokens = 1;
        if (!seeder->Complete(seed_request).ok()) return 1;
        seeder->Drain();
      }
      auto node = start_node(false);
      CompletionRequest request;
      request.prompt = prompt;
      request.sampling.max_tokens = 1;
      auto done = node->Complete(request);
      if (!done.ok()) {
        std::fprintf(stderr, "%s\n", done.status().ToString().c_str());
        return 1;
      }
      const double ttft = done->ttft_seconds;
      const uint64_t fetched_bytes = done->prompt.store * kv_bytes_per_token;
      if (hit == 0) {
        recompute = ttft;
        engine_rate = PrefillFlops(config, n, 0) / ttft;
      }
      const double compute_limit = engine_rate > 0 ? PrefillFlops(config, n, static_cast<double>(done->prompt.store)) / engine_rate : 0;
      std::printf("| %u | %u %% (%llu tokens) | %.1f ms | %.1f ms | %.2fx | %.1f MiB | %.2f ms | %.1f ms | %.2f |\n", n, hit,
                  static_cast<unsigned long long>(done->prompt.store), ttft * 1e3, recompute * 1e3,
                  recompute > 0 ? recompute / ttft : 0.0, static_cast<double>(fetched_bytes) / (1 << 20),
                  fetched_bytes ? MemcpySeconds(fetched_bytes) * 1e3 : 0.0, compute_limit * 1e3, engine_rate / 1e9);
      empty_store();
    }
  }
  std::filesystem::remove_all(dir);
  return 0;
}
