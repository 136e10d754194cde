// CudaEngine: kvstash-node's GPU engine — the Llama-family decoder of cpu_engine.h (RMSNorm,
// rotary embeddings in Hugging Face's rotate-half form, grouped-query attention, SwiGLU MLP, tied
// or untied embeddings) on one CUDA device, with its paged KV cache in HBM.
//
// Numbers: weights and KV in the checkpoint's 16-bit type (BF16 or F16; an F32 checkpoint is
// rounded to bf16 at load). The matrix products are cuBLAS (cublasGemmEx, 16-bit inputs, fp32
// accumulation); the residual stream is fp32 (o_proj and down_proj accumulate into it with
// beta = 1); norms, rotary angles, softmax and SwiGLU are computed in fp32 and rounded once to the
// 16-bit type (cuda_kernels.h). Logits come back as fp32 on the host.
//
// Not bit-deterministic across chunkings: cuBLAS may pick another algorithm for another number of
// tokens, so a prompt computed in different chunks can differ in the last bits (greedy tokens agree;
// docs/NODE.md has the measured spread). The same call on the same inputs gives the same bits.
//
// Thread-safety: Forward calls must not overlap (the runtime's step thread makes them). Page copies
// (the pool's CopyIn/CopyOut) may come from any thread; they are ordered on the engine's stream.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kvstash/result.h"
#include "node/checkpoint.h"
#include "node/cuda_page_memory.h"
#include "node/engine.h"

namespace kvstash::node {

struct CudaEngineOptions {
  int device = 0;
  CudaPageMemoryOptions staging;
};

class CudaEngine final : public Engine {
 public:
  // Uploads every tensor the config names. NOT_FOUND / INVALID_ARGUMENT naming the tensor (as
  // CpuEngine::Load), INVALID_ARGUMENT for a head_dim the attention kernel lacks, UNAVAILABLE when
  // there is no such CUDA device, RESOURCE_EXHAUSTED when the weights do not fit.
  static Result<std::unique_ptr<CudaEngine>> Load(const Checkpoint& checkpoint, const CudaEngineOptions& options = {});
  ~CudaEngine() override;

  std::string_view name() const override { return "cuda"; }
  const ModelConfig& config() const override { return config_; }
  // KV in the weights' 16-bit type.
  KvGeometry kv_geometry() const override;
  // HBM on this engine's device (CudaPageMemory), copies on this engine's stream.
  Result<std::unique_ptr<PageMemory>> AllocatePageMemory(size_t bytes) override;
  // As CpuEngine::Forward: the same arguments, the same INVALID_ARGUMENT checks (nothing written),
  // plus a pool that is not this engine's HBM pages of kv_geometry(). INTERNAL for a CUDA failure.
  Status Forward(std::span<const uint32_t> tokens, uint32_t start, std::span<const uint32_t> page_table,
                 KvPagePool& pool, std::vector<float>* logits, bool last_only = true) override;

  // "bf16" or "fp16": the KV's element type, for the store namespace.
  std::string_view kv_dtype_name() const;
  int device() const { return options_.device; }

 private:
  struct Impl;
  CudaEngine(const ModelConfig& config, const CudaEngineOptions& options);

  ModelConfig config_;
  CudaEngineOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstash::node
