// MakeRandomModel: a checkpoint with seeded random weights, for tests and benchmarks (real weights
// cannot be downloaded here).
#pragma once

#include <cstdint>
#include <filesystem>

#include "kvstash/status.h"
#include "node/model_config.h"

namespace kvstash::node {

// Writes DIR/config.json (config.ToJson()) and DIR/model.safetensors holding every tensor of
// LlamaTensors(config), stored in config.torch_dtype (rounded to nearest even from fp32). Creates
// DIR if needed; overwrites those two files.
//
// Deterministic: the same config and seed give the same bytes (on one platform: the normal
// deviates use the C library's log, sqrt and cos). Each tensor draws from its own std::mt19937_64
// seeded with XXH3-64(name, seed), turned into N(0, 1) by Box-Muller.
//
// Scales (std of a normal; norm weights are 1 + N(0, 0.1)), chosen so that every activation stays
// O(1) and logits differ between tokens by a few units:
//   q/k/v/gate/up_proj: 1/sqrt(hidden)   — outputs ~N(0,1) on a normalized input, so q.k/sqrt(hd)
//                                          has std ~1: attention neither uniform nor one-hot
//   o_proj: 1/sqrt(heads*hd), down_proj: 1/sqrt(intermediate) — each residual update O(1)
//   embed_tokens, lm_head: 2/sqrt(hidden) — logits of a normalized state have std ~2 (so do
//                                          tied ones); embeddings are small, as in trained models
//
// INVALID_ARGUMENT for a config that does not validate; ALREADY_EXISTS when DIR holds another
// *.safetensors file (Checkpoint::Open would read it too); INTERNAL on an I/O failure.
Status MakeRandomModel(const ModelConfig& config, uint64_t seed, const std::filesystem::path& dir);

}  // namespace kvstash::node
