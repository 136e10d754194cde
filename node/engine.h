// Engine: what kvstash-node's runtime asks of a model implementation — one forward step of one
// sequence over the paged KV cache, the shape of that cache's pages, and where they live.
// CpuEngine (cpu_engine.h) is the reference; EmulatedEngine takes the cost model's time and moves
// the model's true KV bytes; the cuda engine keeps its pages in HBM.
//
// Thread-safety: Forward and FinishStep calls must not overlap (the runtime's step thread makes them).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "kvstash/result.h"
#include "node/kv_pages.h"
#include "node/model_config.h"
#include "node/page_memory.h"

namespace kvstash::node {

// What one step of the runtime's loop computed: prefill chunks and one decode token per running
// sequence. Engines whose time is modelled (emulated) charge for the step as a whole.
struct StepShape {
  struct Chunk {
    uint64_t tokens = 0, start = 0;  // positions [start, start + tokens) of one sequence
  };
  std::vector<Chunk> prefill;
  uint64_t decode_sequences = 0, decode_context_tokens = 0;
  bool empty() const { return prefill.empty() && decode_sequences == 0; }
};

// The checks every engine makes before a forward step writes anything: at least one token, every id
// in the vocabulary, positions within the context, a pool of exactly `geometry` (host-accessible when
// `needs_host`), and a page table that covers the step with pages of the pool. INVALID_ARGUMENT
// naming the problem.
Status ValidateStep(const ModelConfig& config, const KvGeometry& geometry, bool needs_host,
                    std::span<const uint32_t> tokens, uint32_t start, std::span<const uint32_t> page_table,
                    const KvPagePool& pool);

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string_view name() const = 0;  // "cpu", "cuda", "emulated"
  virtual const ModelConfig& config() const = 0;
  // The KV of one token as this engine stores it in its pages.
  virtual KvGeometry kv_geometry() const { return KvGeometry::Fp32(config()); }
  // Memory for the pool's pages: host memory unless the engine computes elsewhere.
  virtual Result<std::unique_ptr<PageMemory>> AllocatePageMemory(size_t bytes) { return AllocateHostPageMemory(bytes); }
  // Runs `tokens` at positions [start, start + tokens.size()) of one sequence: reads the KV of
  // [0, start) from `page_table`'s pages, writes the new tokens' KV there, and fills `logits`
  // (when set) with vocab_size floats per new token, or only the last token's with `last_only`.
  // INVALID_ARGUMENT, with nothing written, for a step that does not fit the model or the table.
  virtual Status Forward(std::span<const uint32_t> tokens, uint32_t start, std::span<const uint32_t> page_table,
                         KvPagePool& pool, std::vector<float>* logits, bool last_only = true) = 0;
  // Called once after every step of the runtime's loop with what it computed.
  virtual void FinishStep(const StepShape& /*step*/) {}

  // Layer-wise progress, for a P/D handoff that sends each group of layers' KV as soon as it is
  // computed. With a hook set, an engine that can tell calls it on the step thread with n (every
  // `every` layers, and after the last) once the KV of layers [0, n) of every token that the
  // current step's Forward calls computed so far is in the pages: the cpu and cuda engines from
  // inside Forward, the emulated engine from FinishStep at the modelled time of that layer. An
  // engine that cannot tell never calls it; the runtime then sends all layers after the step.
  void SetLayerProgress(std::function<void(uint32_t layers_done)> hook, uint32_t every) {
    layer_progress_ = std::move(hook);
    layer_every_ = std::max<uint32_t>(1, every);
  }

 protected:
  bool ReportsLayer(uint32_t done, uint32_t total) const {
    return layer_progress_ && (done % layer_every_ == 0 || done == total);
  }
  void ReportLayers(uint32_t done, uint32_t total) {
    if (ReportsLayer(done, total)) layer_progress_(done);
  }

 private:
  std::function<void(uint32_t)> layer_progress_;
  uint32_t layer_every_ = 1;
};

}  // namespace kvstash::node
