// EmulatedEngine: a model without the math. Each step of the runtime takes the time that the
// conductor's cost model (scheduler/cost_model.h) predicts for the configured model on the
// configured hardware, and every token's KV has that model's true size and dtype in the pages, so
// a cluster of emulated nodes on a small machine moves the real byte volume through the store at
// trace scale.
//
// KV content: token i of a sequence gets a 64-bit seed s_i = Mix(s_{i-1}, token_i, i) (s_{-1} = a
// constant), where s_{i-1} is read back from the pages — so, as with a real model, a token's KV is
// a function of the whole prefix before it, which is exactly what the prefix's block key names.
// Each [layer][K|V][kv_head] run of head_dim elements of token i is filled with the 64-bit word
// Word(s_i, layer, kv, head) repeated. ExpectedBlock() recomputes a block's bytes from the tokens,
// so a test (or an operator) can verify any fetched block exactly. The next token is s_i modulo
// vocab_size (a one-hot logit vector), so wrong KV in the pages gives different tokens.
//
// Time: FinishStep sleeps until the step's first Forward + time_scale · (Σ prefill chunk seconds
// + the decode step's seconds). Filling pages counts toward that time; a step whose real work
// took longer is not slowed further and adds to overrun_seconds().
//
// Thread-safety: as Engine (one step at a time); overrun_seconds() from any thread.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvstash/result.h"
#include "node/engine.h"
#include "node/model_config.h"
#include "scheduler/cost_model.h"
#include "scheduler/model_spec.h"

namespace kvstash::node {

struct EmulatedOptions {
  // Hardware of one instance (gpus, gpu_tflops, mfu, hbm_gbytes_s, mbu, hbm_gib_per_gpu, h2d and
  // NIC rates); its model fields are replaced by the config's (SpecFromConfig).
  scheduler::ModelSpec hardware;
  std::string profile;        // a measured profile file (scheduler/profile.h); empty: analytic
  double time_scale = 1.0;    // predicted seconds × this; 0 runs as fast as the fills allow
  // KV bytes per token × this (head_dim shrunk first, to the 8 bytes a head's run needs, then KV
  // heads, then layers; 16 bytes a token at least): a model whose true KV is more than the machine
  // carries at the replayed rate. 1 = the model's true size. Time is unaffected.
  double kv_bytes_scale = 1.0;
  uint32_t decode_max_batch = 128;
};

// The cost model's ModelSpec for a Llama-family config on `hardware`: layers, hidden, gqa and
// element bytes from the config; linear FLOPs per token and layer 2·(2d² + 2d²/gqa + 3·d·I)
// (q, o, k, v, gate/up/down); parameters counted from the shapes.
scheduler::ModelSpec SpecFromConfig(const ModelConfig& config, const scheduler::ModelSpec& hardware,
                                    uint32_t block_tokens);

class EmulatedEngine final : public Engine {
 public:
  // INVALID_ARGUMENT for a config that does not validate, a negative or non-finite time_scale, or
  // a profile that cannot be fitted.
  static Result<std::unique_ptr<EmulatedEngine>> Create(const ModelConfig& config, const EmulatedOptions& options,
                                                        uint32_t block_tokens);

  std::string_view name() const override { return "emulated"; }
  const ModelConfig& config() const override { return config_; }
  KvGeometry kv_geometry() const override;
  Status Forward(std::span<const uint32_t> tokens, uint32_t start, std::span<const uint32_t> page_table,
                 KvPagePool& pool, std::vector<float>* logits, bool last_only = true) override;
  void FinishStep(const StepShape& step) override;

  const scheduler::CostModel& cost_model() const { return cost_; }
  // Predicted seconds of one step (before time_scale).
  double PredictSeconds(const StepShape& step) const;
  double overrun_seconds() const { return overrun_us_.load(std::memory_order_relaxed) / 1e6; }

  // The bytes block `block` (of block_tokens tokens) of a sequence holds for these prompt tokens
  // (which must cover the block), laid out as the runtime stores it: its pages in order.
  std::vector<std::byte> ExpectedBlock(std::span<const uint32_t> tokens, size_t block, uint32_t block_tokens,
                                       uint32_t page_tokens) const;

 private:
  EmulatedEngine(const ModelConfig& config, const scheduler::CostModel& cost, double time_scale, double kv_bytes_scale)
      : config_(config), cost_(cost), time_scale_(time_scale), kv_bytes_scale_(kv_bytes_scale) {}
  // Writes token `position`'s KV (seed `seed`) into its slot of `page`.
  void FillToken(uint64_t seed, uint32_t position, std::span<const uint32_t> page_table, KvPagePool& pool) const;
  uint64_t ReadSeed(uint32_t position, std::span<const uint32_t> page_table, KvPagePool& pool) const;

  ModelConfig config_;
  scheduler::CostModel cost_;
  double time_scale_;
  double kv_bytes_scale_;
  std::optional<std::chrono::steady_clock::time_point> step_began_;
  std::atomic<uint64_t> overrun_us_{0};
};

}  // namespace kvstash::node
