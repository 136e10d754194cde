// Engine: what kvstash-node's runtime asks of a model implementation — one forward step of one
// sequence over the paged KV cache. CpuEngine (cpu_engine.h) is the reference; the cuda and
// emulated engines of issue 14 implement the same interface.
//
// Thread-safety: Forward calls must not overlap (the runtime's step thread makes them).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "kvstash/result.h"
#include "node/kv_pages.h"
#include "node/model_config.h"

namespace kvstash::node {

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string_view name() const = 0;  // "cpu", "cuda", "emulated"
  virtual const ModelConfig& config() const = 0;
  // Runs `tokens` at positions [start, start + tokens.size()) of one sequence: reads the KV of
  // [0, start) from `page_table`'s pages, writes the new tokens' KV there, and fills `logits`
  // (when set) with vocab_size floats per new token, or only the last token's with `last_only`.
  // INVALID_ARGUMENT, with nothing written, for a step that does not fit the model or the table.
  virtual Status Forward(std::span<const uint32_t> tokens, uint32_t start, std::span<const uint32_t> page_table,
                         KvPagePool& pool, std::vector<float>* logits, bool last_only = true) = 0;
};

}  // namespace kvstash::node
