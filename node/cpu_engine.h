// CpuEngine: the reference engine of kvstash-node — a Llama-family decoder (RMSNorm, rotary
// embeddings in Hugging Face's rotate-half form, grouped-query attention, SwiGLU MLP) in fp32 over
// the paged KV cache (kv_pages.h). F16/BF16 checkpoints are upcast to fp32 at load.
//
// Deterministic: every output element is reduced by one thread in a fixed order, and a token's
// computation reads only its own activations and the KV of the positions before it. So the same
// tokens give the same bits whatever the thread count, however a prompt is split into chunks, and
// whether a prefix's KV was computed here or fetched as bytes that an identical run computed.
//
// Thread-safety: Forward calls must not overlap (one forward step at a time).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kvstash/result.h"
#include "node/checkpoint.h"
#include "node/engine.h"
#include "node/kv_pages.h"
#include "node/model_config.h"
#include "node/parallel.h"

namespace kvstash::node {

struct CpuEngineOptions {
  size_t threads = 1;
};

class CpuEngine final : public Engine {
 public:
  // Loads every tensor the config names (NOT_FOUND / INVALID_ARGUMENT naming the tensor).
  static Result<std::unique_ptr<CpuEngine>> Load(const Checkpoint& checkpoint, const CpuEngineOptions& options);

  std::string_view name() const override { return "cpu"; }
  const ModelConfig& config() const override { return config_; }

  // Runs `tokens` at positions [start, start + tokens.size()) of one sequence. The KV of positions
  // [0, start) is read from the pages of `page_table` (in token order); the new tokens' KV is
  // written there. `page_table` must cover start + tokens.size() tokens. When `logits` is set it
  // receives vocab_size floats per new token, or only the last token's with `last_only`.
  // INVALID_ARGUMENT (nothing written) for an empty step, a token id >= vocab_size, positions past
  // max_position_embeddings or a page table that is too short.
  Status Forward(std::span<const uint32_t> tokens, uint32_t start, std::span<const uint32_t> page_table,
                 KvPagePool& pool, std::vector<float>* logits, bool last_only = true) override;

 private:
  struct Layer {
    std::vector<float> input_norm, q, k, v, o, post_norm, gate, up, down;
  };
  CpuEngine(const ModelConfig& config, size_t threads) : config_(config), pool_(threads) {}

  // out[t][r] = dot(w[r], in[t]) for t < n, r < rows; w is [rows][cols].
  void MatMul(const float* in, size_t n, const std::vector<float>& w, size_t rows, size_t cols, float* out);
  void RmsNorm(const float* in, size_t n, const std::vector<float>& weight, float* out) const;
  void Rope(float* x, size_t n, uint32_t start, uint32_t heads) const;
  // Causal attention of the n new tokens over positions [0, start + i] each, reading KV from pages.
  void Attention(const float* q, size_t n, uint32_t start, std::span<const uint32_t> page_table, const KvPagePool& pool,
                 uint32_t layer, float* out);

  ModelConfig config_;
  ThreadPool pool_;
  std::vector<float> embed_, final_norm_, lm_head_;  // lm_head_ empty when tied to embed_
  std::vector<Layer> layers_;
  std::vector<float> inv_freq_;  // head_dim / 2 rotary frequencies
};

}  // namespace kvstash::node
