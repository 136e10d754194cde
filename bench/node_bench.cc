// kvstash-bench-node: time to first token of kvstash-node with 0 / 50 / 90 % of the prompt's
// prefix in a live kvstashd, against recomputing the same prompt — and beside each figure its
// limits measured in the same run.
//
//   --engine cpu   (default) a small fp32 model; limits: the fetched KV bytes at memcpy speed and
//                  the prefill's arithmetic at the rate the engine's own matrix products reach here.
//   --engine cuda  (built with CUDA) a bf16 model on the GPU, KV pages in HBM; limits: the fetched
//                  KV bytes at the pinned host-to-device copy rate of the card (one cudaMemcpy) and
//                  the prefill's arithmetic at the bf16 GEMM rate cuBLAS reaches on it. A second
//                  table times loading the cached prefix into the paged HBM cache (page by page,
//                  from pinned and from pageable memory, and the whole store fetch) against that
//                  copy rate, and the cost model's prediction (scheduler/model_spec.h with this
//                  model's shape and the card's measured rates) stands beside the measured TTFT.
//
// A fresh node (runtime, local cache off) serves each row, so every reused token comes from the
// store. The store is seeded by another node that computes exactly the cached prefix first. Each
// row also decodes --check-tokens greedy tokens: the fetched rows must give the recomputed row's.
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
#include "kvstash/prefix_hasher.h"
#include "node/checkpoint.h"
#include "node/cpu_engine.h"
#include "node/kv_block_store.h"
#include "node/random_model.h"
#include "node/runtime.h"
#include "scheduler/model_spec.h"
#include "tests/support/daemon_process.h"
#ifdef KVSTASH_NODE_CUDA
#include "gpu/cuda_util.h"
#include "node/cuda_engine.h"
#include "node/cuda_probe.h"
#endif

namespace {

using Clock = std::chrono::steady_clock;
using namespace kvstash;
using namespace kvstash::node;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

// Per-token matrix-product FLOPs of one layer (q, k, v, o, gate, up, down; 2 per multiply-add).
double LinearFlopsPerTokenLayer(const ModelConfig& c) {
  const double h = c.hidden_size, kv = c.num_key_value_heads * c.head_dim(), i = c.intermediate_size;
  return 2 * (h * h + 2 * h * kv + h * h + 3 * h * i);
}

// Prefill FLOPs of tokens [p, n) of the model: matrix products plus attention (2 per multiply-add).
double PrefillFlops(const ModelConfig& c, double n, double p) {
  const double attention = 2 * 2 * double(c.hidden_size) * (n * n - p * p) / 2;  // QK and PV, causal triangle
  return c.num_hidden_layers * (LinearFlopsPerTokenLayer(c) * (n - p) + attention);
}

template <typename T>
T Or(Result<T> r, T fallback) {
  if (!r.ok()) {
    std::fprintf(stderr, "measurement failed: %s\n", r.status().ToString().c_str());
    return fallback;
  }
  return *r;
}

double MemcpySeconds(size_t bytes) {
  std::vector<std::byte> src(bytes, std::byte{1}), dst(bytes);
  const auto start = Clock::now();
  std::memcpy(dst.data(), src.data(), bytes);
  return Seconds(start);
}

// Lends one engine to many runtimes in turn (the cuda engine's weights load once per run).
class BorrowedEngine final : public Engine {
 public:
  explicit BorrowedEngine(Engine& engine) : e_(engine) {}
  std::string_view name() const override { return e_.name(); }
  const ModelConfig& config() const override { return e_.config(); }
  KvGeometry kv_geometry() const override { return e_.kv_geometry(); }
  Result<std::unique_ptr<PageMemory>> AllocatePageMemory(size_t bytes) override { return e_.AllocatePageMemory(bytes); }
  Status Forward(std::span<const uint32_t> tokens, uint32_t start, std::span<const uint32_t> page_table,
                 KvPagePool& pool, std::vector<float>* logits, bool last_only) override {
    return e_.Forward(tokens, start, page_table, pool, logits, last_only);
  }
  void FinishStep(const StepShape& step) override { e_.FinishStep(step); }

 private:
  Engine& e_;
};

struct LoadRow {
  uint32_t prompt = 0, hit = 0;
  size_t bytes = 0;
  double pinned_memcpy = 0, pool_pinned = 0, pool_pageable = 0, pool_driver = 0, store_fetch = 0;  // GB/s
};

std::string TokenList(const std::vector<uint32_t>& t) {
  std::string s;
  for (uint32_t v : t) s += (s.empty() ? "" : ",") + std::to_string(v);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvstash-bench-node: TTFT with the prefix in kvstashd vs recomputing"};
  std::string kvstashd = KVSTASHD_PATH, engine_name = "cpu", dtype_name = "auto", dram = "4GiB";
  std::vector<uint32_t> prompts = {1024, 2048, 4096};
  std::vector<uint32_t> hits = {0, 50, 90};
  uint32_t hidden = 128, layers = 4, heads = 4, kv_heads = 2, intermediate = 0, vocab = 1000, block_tokens = 512;
  uint32_t check_tokens = 1;
  size_t threads = 2, max_batch_tokens = 2048;
  int cuda_device = 0;
  app.add_option("--kvstashd", kvstashd, "daemon binary");
  app.add_option("--engine", engine_name, "cpu or cuda");
  app.add_option("--prompt-tokens", prompts, "prompt lengths")->delimiter(',');
  app.add_option("--hit-percent", hits, "share of the prompt's full blocks already in the store")->delimiter(',');
  app.add_option("--hidden", hidden, "model width");
  app.add_option("--layers", layers, "model depth");
  app.add_option("--heads", heads, "query heads");
  app.add_option("--kv-heads", kv_heads, "KV heads");
  app.add_option("--intermediate", intermediate, "MLP width (default 3 x hidden)");
  app.add_option("--vocab", vocab, "vocabulary");
  app.add_option("--dtype", dtype_name, "checkpoint dtype: auto (f32 for cpu, bf16 for cuda), f32, bf16, f16");
  app.add_option("--threads", threads, "cpu engine threads");
  app.add_option("--cuda-device", cuda_device, "cuda engine device");
  app.add_option("--block-tokens", block_tokens, "the store's block size");
  app.add_option("--max-batch-tokens", max_batch_tokens, "prefill chunk");
  app.add_option("--check-tokens", check_tokens, "greedy tokens decoded per row, compared with the recomputed row's");
  app.add_option("--dram-capacity", dram, "kvstashd's DRAM tier");
  CLI11_PARSE(app, argc, argv);
  const bool cuda = engine_name == "cuda";
  if (!cuda && engine_name != "cpu") {
    std::fprintf(stderr, "--engine must be cpu or cuda\n");
    return 2;
  }
#ifndef KVSTASH_NODE_CUDA
  if (cuda) {
    std::fprintf(stderr, "this kvstash-bench-node was built without CUDA: no cuda engine\n");
    return 2;
  }
#endif

  ModelConfig config;
  config.hidden_size = hidden;
  config.num_hidden_layers = layers;
  config.num_attention_heads = heads;
  config.num_key_value_heads = kv_heads;
  config.intermediate_size = intermediate == 0 ? hidden * 3 : intermediate;
  config.vocab_size = vocab;
  config.max_position_embeddings = *std::max_element(prompts.begin(), prompts.end()) + check_tokens + 16;
  if (dtype_name == "auto") dtype_name = cuda ? "bf16" : "f32";
  config.torch_dtype = dtype_name == "bf16" ? DType::kBF16 : dtype_name == "f16" ? DType::kF16 : DType::kF32;
  const auto dir = std::filesystem::temp_directory_path() / ("kvstash_bench_node_" + std::to_string(::getpid()));
  if (Status made = MakeRandomModel(config, 1, dir); !made.ok()) {
    std::fprintf(stderr, "%s\n", made.ToString().c_str());
    return 1;
  }
  auto checkpoint = Checkpoint::Open(dir);
  if (!checkpoint.ok()) return 1;
  std::unique_ptr<Engine> shared;  // the cuda engine, lent to every node
  std::string card = "cpu";
#ifdef KVSTASH_NODE_CUDA
  if (cuda) {
    auto loaded = CudaEngine::Load(**checkpoint, {cuda_device, {}});
    if (!loaded.ok()) {
      std::fprintf(stderr, "cuda engine: %s\n", loaded.status().ToString().c_str());
      return 1;
    }
    shared = std::move(*loaded);
    card = Or(CudaDeviceName(cuda_device), std::string("?"));
  }
#endif
  testing::DaemonProcess daemon(kvstashd, {"--dram-capacity", dram});
  if (!daemon.ok()) {
    std::fprintf(stderr, "kvstashd did not start: %s\n", daemon.error().c_str());
    return 1;
  }
  ClientOptions client_options;
  client_options.address = daemon.grpc_address();
  auto client = Client::Connect(client_options);
  if (!client.ok()) return 1;
  const auto id = (*checkpoint)->Identity();
  const uint32_t element_bytes = cuda ? 2 : 4;
  const std::string ns = std::string(reinterpret_cast<const char*>(id.data()), id.size()) + "|paged16|" +
                         (cuda ? (dtype_name == "f16" ? "fp16" : "bf16") : "fp32");
  NodeOptions options;
  options.block_tokens = block_tokens;
  options.local_cache = false;
  options.max_batch_tokens = max_batch_tokens;
  options.pool_pages = config.max_position_embeddings / options.page_tokens + 64;
  // The seeder stores what it computes; the measured node stores nothing, so each row starts
  // from exactly the blocks its seeder put.
  auto start_node = [&](bool store_puts) -> std::unique_ptr<NodeRuntime> {
    NodeOptions o = options;
    o.store_puts = store_puts;
    std::unique_ptr<Engine> engine;
    if (shared) {
      engine = std::make_unique<BorrowedEngine>(*shared);
    } else {
      auto cpu = CpuEngine::Load(**checkpoint, {threads});
      if (!cpu.ok()) return nullptr;
      engine = std::move(*cpu);
    }
    Result<std::unique_ptr<NodeRuntime>> runtime = NodeRuntime::Start(std::move(engine), client->get(), ns, o);
    if (!runtime.ok()) {
      std::fprintf(stderr, "node: %s\n", runtime.status().ToString().c_str());
      return nullptr;
    }
    return std::move(*runtime);
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
  const size_t kv_bytes_per_token =
      2 * size_t{config.num_hidden_layers} * config.num_key_value_heads * config.head_dim() * element_bytes;

  // The card's ceilings, measured once in this run.
  double h2d_pinned = 0, gemm_tflops = 0;
#ifdef KVSTASH_NODE_CUDA
  if (cuda) {
    const size_t probe_bytes = size_t{*std::max_element(prompts.begin(), prompts.end())} * kv_bytes_per_token;
    h2d_pinned = Or(MeasureHostToDevice(cuda_device, probe_bytes, true), 0.0);
    const double h2d_pageable = Or(MeasureHostToDevice(cuda_device, probe_bytes, false), 0.0);
    gemm_tflops = Or(MeasureGemmTflops(cuda_device, 8192, 8192, 8192), 0.0);
    const double gemm_model_tflops =
        Or(MeasureGemmTflops(cuda_device, 2 * size_t{config.intermediate_size}, max_batch_tokens, hidden), 0.0);
    std::printf("card: %s\n", card.c_str());
    std::printf("host-to-device, %.0f MiB in one cudaMemcpy: pinned %.1f GB/s, pageable %.1f GB/s\n",
                probe_bytes / 1048576.0, h2d_pinned, h2d_pageable);
    std::printf("cuBLAS bf16 GEMM (fp32 accumulate): 8192^3 %.0f TFLOP/s; the model's gate/up shape (%u x %zu x %u) "
                "%.0f TFLOP/s\n",
                gemm_tflops, 2 * config.intermediate_size, max_batch_tokens, hidden, gemm_model_tflops);
  }
#endif

  std::printf("kvstash-bench-node: %s engine; model hidden %u, %u layers, %u/%u heads, intermediate %u, vocab %u, "
              "%s KV %zu B/token; block %u tokens; prefill chunk %zu; data path %s\n",
              engine_name.c_str(), hidden, layers, heads, kv_heads, config.intermediate_size, vocab,
              cuda ? (dtype_name == "f16" ? "fp16" : "bf16") : "fp32", kv_bytes_per_token, block_tokens,
              max_batch_tokens, (*client)->data_path().c_str());

  {  // warm-up: module loads, cuBLAS heuristics, the daemon's first connection
    auto warm = start_node(false);
    if (!warm) return 1;
    CompletionRequest request;
    request.prompt.assign(std::min<uint32_t>(prompts.front(), 1024), 1);
    request.sampling.max_tokens = 2;
    if (!warm->Complete(request).ok()) return 1;
  }

  // The cost model's prediction (scheduler/model_spec.h's formulas) with this model's shape and
  // the card's measured ceilings: prefill at the cuBLAS GEMM rate × the conductor's default MFU,
  // the fetched prefix's bytes at the pinned host-to-device rate (not overlapped with compute).
  scheduler::ModelSpec spec;
  spec.layers = config.num_hidden_layers;
  spec.hidden = config.hidden_size;
  spec.attn_coeff = 2;  // causal QK + PV: 2 · d · (n² − p²) per layer
  spec.linear_coeff = LinearFlopsPerTokenLayer(config) / (double(config.hidden_size) * config.hidden_size);
  spec.gqa = config.num_attention_heads / config.num_key_value_heads;
  spec.elem_bytes = element_bytes;
  spec.gpus = 1;
  spec.gpu_tflops = gemm_tflops;
  auto predicted = [&](double n, double p) {
    return spec.PrefillSeconds(n, p) + (h2d_pinned > 0 ? p * kv_bytes_per_token / (h2d_pinned * 1e9) : 0);
  };

  if (cuda) {
    std::printf("| prompt | in store | TTFT | recompute TTFT | speed-up | fetched KV | fetched at pinned H2D | computed "
                "tokens at cuBLAS rate | engine TFLOP/s (recompute) | cost model TTFT | greedy tokens |\n");
    std::printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
  } else {
    std::printf("| prompt | in store | TTFT | recompute TTFT | speed-up | fetched KV | fetched at memcpy | computed tokens "
                "at the engine's rate | engine GFLOP/s |\n");
    std::printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  }
  std::vector<LoadRow> loads;
  int mismatches = 0;
  std::mt19937_64 rng(5);
  for (uint32_t n : prompts) {
    std::vector<uint32_t> prompt(n);
    for (auto& t : prompt) t = static_cast<uint32_t>(rng() % config.vocab_size);
    double recompute = 0, engine_rate = 0;
    std::vector<uint32_t> recomputed_tokens;
    std::vector<float> recomputed_logits;
    for (uint32_t hit : hits) {
      const size_t full_blocks = (n - 1) / block_tokens;
      const size_t cached_blocks = full_blocks * hit / 100;
      if (cached_blocks > 0) {
        // Seed the store: a node computes exactly the cached prefix (plus one token) and stores it.
        auto seeder = start_node(true);
        if (!seeder) return 1;
        CompletionRequest seed_request;
        seed_request.prompt.assign(prompt.begin(), prompt.begin() + static_cast<long>(cached_blocks * block_tokens + 1));
        seed_request.sampling.max_tokens = 1;
        if (!seeder->Complete(seed_request).ok()) return 1;
        seeder->Drain();
      }
      auto node = start_node(false);
      if (!node) return 1;
      CompletionRequest request;
      request.prompt = prompt;
      request.sampling.max_tokens = check_tokens;
      auto done = node->Complete(request);
      if (!done.ok()) {
        std::fprintf(stderr, "%s\n", done.status().ToString().c_str());
        return 1;
      }
      node.reset();
      const double ttft = done->ttft_seconds;
      const uint64_t fetched_bytes = done->prompt.store * kv_bytes_per_token;
      if (hit == 0) {
        recompute = ttft;
        engine_rate = PrefillFlops(config, n, 0) / ttft;
        recomputed_tokens = done->tokens;
        recomputed_logits = done->first_logits;
      }
      const double p = static_cast<double>(done->prompt.store);
      if (cuda) {
        float max_diff = 0;
        for (size_t i = 0; i < recomputed_logits.size() && i < done->first_logits.size(); ++i) {
          max_diff = std::max(max_diff, std::abs(recomputed_logits[i] - done->first_logits[i]));
        }
        const bool same = done->tokens == recomputed_tokens;
        mismatches += same ? 0 : 1;
        char greedy[96];
        std::snprintf(greedy, sizeof greedy, "%s (first logits max |diff| %.3f)", same ? "same" : "DIFFER", max_diff);
        std::printf("| %u | %u %% (%llu tokens) | %.1f ms | %.1f ms | %.2fx | %.1f MiB | %.2f ms | %.1f ms | %.1f | %.1f ms "
                    "| %s |\n",
                    n, hit, static_cast<unsigned long long>(done->prompt.store), ttft * 1e3, recompute * 1e3,
                    recompute > 0 ? recompute / ttft : 0.0, static_cast<double>(fetched_bytes) / (1 << 20),
                    h2d_pinned > 0 ? fetched_bytes / (h2d_pinned * 1e9) * 1e3 : 0.0,
                    gemm_tflops > 0 ? PrefillFlops(config, n, p) / (gemm_tflops * 1e12) * 1e3 : 0.0, engine_rate / 1e12,
                    predicted(n, p) * 1e3, hit == 0 ? TokenList(done->tokens).substr(0, 60).c_str() : greedy);
      } else {
        const double compute_limit = engine_rate > 0 ? PrefillFlops(config, n, p) / engine_rate : 0;
        std::printf("| %u | %u %% (%llu tokens) | %.1f ms | %.1f ms | %.2fx | %.1f MiB | %.2f ms | %.1f ms | %.2f |\n", n,
                    hit, static_cast<unsigned long long>(done->prompt.store), ttft * 1e3, recompute * 1e3,
                    recompute > 0 ? recompute / ttft : 0.0, static_cast<double>(fetched_bytes) / (1 << 20),
                    fetched_bytes ? MemcpySeconds(fetched_bytes) * 1e3 : 0.0, compute_limit * 1e3, engine_rate / 1e9);
        if (hit > 0 && done->tokens != recomputed_tokens) ++mismatches;
      }
      std::fflush(stdout);
#ifdef KVSTASH_NODE_CUDA
      if (cuda && cached_blocks > 0) {
        // Loading the cached prefix into the paged HBM cache, against one pinned cudaMemcpy.
        LoadRow row;
        row.prompt = n;
        row.hit = hit;
        const size_t pages = cached_blocks * block_tokens / options.page_tokens;
        auto pool_memory = shared->AllocatePageMemory(pages * options.page_tokens * kv_bytes_per_token);
        if (!pool_memory.ok()) return 1;
        CudaPageMemory* flush = dynamic_cast<CudaPageMemory*>(pool_memory->get());
        auto pool = KvPagePool::Create(shared->kv_geometry(), options.page_tokens, pages, std::move(*pool_memory));
        if (!pool.ok() || flush == nullptr) return 1;
        const size_t page_bytes = (*pool)->page_bytes();
        row.bytes = pages * page_bytes;
        row.pinned_memcpy = Or(MeasureHostToDevice(cuda_device, row.bytes, true, 3), 0.0);
        auto pinned = gpu::PinnedBuffer::Allocate(row.bytes);
        std::vector<std::byte> pageable(row.bytes, std::byte{3});
        if (!pinned.ok()) return 1;
        std::memset(pinned->data(), 3, row.bytes);
        auto time_pages = [&](const std::byte* src) {
          double best = 1e30;
          for (int rep = 0; rep < 3; ++rep) {
            const auto t0 = Clock::now();
            for (uint32_t pg = 0; pg < pages; ++pg) {
              if (!(*pool)->WritePage(pg, std::span(src + pg * page_bytes, page_bytes)).ok()) return 0.0;
            }
            // The pageable path returns before its last DMA lands: wait for it.
            if (!flush->Flush().ok()) return 0.0;
            best = std::min(best, Seconds(t0));
          }
          return row.bytes / best / 1e9;
        };
        row.pool_pinned = time_pages(pinned->data());
        row.pool_pageable = time_pages(pageable.data());
        {
          CudaPageMemoryOptions driver;
          driver.driver_staging = true;
          auto mem = CudaPageMemory::Allocate(row.bytes, cuda_device, nullptr, driver);
          if (mem.ok()) {
            CudaPageMemory* engine_memory = flush;
            flush = mem->get();
            auto driver_pool = KvPagePool::Create(shared->kv_geometry(), options.page_tokens, pages,
                                                  std::unique_ptr<PageMemory>(std::move(*mem)));
            if (driver_pool.ok()) {
              std::swap(*pool, *driver_pool);
              row.pool_driver = time_pages(pageable.data());
              std::swap(*pool, *driver_pool);
            }
            flush = engine_memory;
          }
        }
        // The whole store fetch (Lookup with a lease, Get, size check, pages written), as Place does it.
        PrefixHasher hasher(ns, block_tokens);
        const std::vector<BlockKey> chain = hasher.Chain(prompt);
        KvBlockStore blocks(**client, **pool, block_tokens);
        std::vector<uint32_t> table(pages);
        for (uint32_t pg = 0; pg < pages; ++pg) table[pg] = pg;
        const auto t0 = Clock::now();
        const FetchResult got = blocks.FetchPrefix(chain, cached_blocks, table, **pool, options.lease_ms);
        (void)flush->Flush();
        const double fetch_seconds = Seconds(t0);
        row.store_fetch = got.blocks == cached_blocks ? row.bytes / fetch_seconds / 1e9 : 0;
        std::printf("load: %u tokens, %u %%: %.0f MiB, pinned cudaMemcpy %.1f GB/s; pages from pinned %.1f, pageable ring "
                    "%.1f, pageable driver %.1f, store fetch %.1f GB/s\n",
                    n, hit, row.bytes / 1048576.0, row.pinned_memcpy, row.pool_pinned, row.pool_pageable,
                    row.pool_driver, row.store_fetch);
        std::fflush(stdout);
        loads.push_back(row);
      }
#endif
      empty_store();
    }
  }
  if (cuda) {
    std::printf("\nLoading the cached prefix into the paged HBM cache (GB/s; ratio to one pinned cudaMemcpy of the same "
                "bytes):\n\n");
    std::printf("| prompt | in store | bytes | pinned cudaMemcpy | pages from pinned | pages from pageable (ring) | pages "
                "from pageable (driver) | store fetch (Lookup+Get+pages) |\n");
    std::printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (const LoadRow& r : loads) {
      auto cell = [&](double v) {
        char buf[48];
        std::snprintf(buf, sizeof buf, "%.1f (%.2fx)", v, r.pinned_memcpy > 0 ? v / r.pinned_memcpy : 0.0);
        return std::string(buf);
      };
      std::printf("| %u | %u %% | %.0f MiB | %.1f | %s | %s | %s | %s |\n", r.prompt, r.hit, r.bytes / 1048576.0,
                  r.pinned_memcpy, cell(r.pool_pinned).c_str(), cell(r.pool_pageable).c_str(),
                  cell(r.pool_driver).c_str(), cell(r.store_fetch).c_str());
    }
    const double compute_per_token = spec.PrefillSeconds(1, 0);
    const double transfer_per_token = h2d_pinned > 0 ? kv_bytes_per_token / (h2d_pinned * 1e9) : 0;
    std::printf("\ncost model (this shape, %.0f TFLOP/s x MFU %.2f, %.1f GB/s): a prefix token costs %.2f us to compute "
                "(linear part) and %.2f us to load, so fetching is predicted to win at %s\n",
                gemm_tflops, spec.mfu, h2d_pinned, compute_per_token * 1e6, transfer_per_token * 1e6,
                transfer_per_token < compute_per_token ? "every hit ratio above 0" : "no hit ratio below the attention term's reach");
  }
  std::printf("greedy tokens of fetched rows that differ from the recomputed row's: %d\n", mismatches);
  std::filesystem::remove_all(dir);
  return mismatches == 0 ? 0 : 3;
}
