// The cuda engine's own kernels (cuda_engine.h does the matrix products with cuBLAS). Every
// launcher takes device pointers and a stream, queues its kernel and returns the launch's error
// (cudaGetLastError); nothing here synchronises.
//
// Elements are the checkpoint's 16-bit type (`Half`); every reduction and every nonlinearity is
// computed in fp32 and rounded once to the 16-bit type on the way out. The residual stream (`x`) is
// fp32 throughout.
//
// KV pages follow kv_pages.h: a page is [layer][K|V][kv_head][token in page][head_dim] of 16-bit
// elements, page p at pool + p * page_bytes, and plane (layer, kv) at + (2 * layer + kv) * plane_bytes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace kvstash::node::cuda {

enum class Half : uint8_t { kBf16, kFp16 };

// Where one layer's KV lives and how a sequence's positions map onto pages.
struct PagedKv {
  std::byte* pool = nullptr;
  size_t page_bytes = 0, plane_bytes = 0;
  const uint32_t* page_table = nullptr;  // device: page of positions [i * page_tokens, (i + 1) * page_tokens)
  uint32_t page_tokens = 0, layer = 0;
};

struct AttentionShape {
  uint32_t n = 0;       // new tokens, at positions [start, start + n)
  uint32_t start = 0;
  uint32_t heads = 0, kv_heads = 0, head_dim = 0;
};

// x[t][i] = float(table[tokens[t]][i]) for t < n, i < hidden.
cudaError_t EmbedTokens(Half dt, const void* table, const uint32_t* tokens, uint32_t n, uint32_t hidden, float* x,
                        cudaStream_t stream);

// out[t] = half(weight * x[t] / sqrt(mean(x[t]^2) + eps)) for t < n (one block per row).
cudaError_t RmsNorm(Half dt, const float* x, const void* weight, uint32_t n, uint32_t hidden, float eps, void* out,
                    cudaStream_t stream);

// qkv holds n rows of [q: heads * hd | k: kv_heads * hd | v: kv_heads * hd]. Rotates q (in place)
// and k by position start + t in Hugging Face's rotate-half form with angle = pos * inv_freq[i]
// (fp32), and writes the rotated k and the v of every token into the pages.
cudaError_t RopeAndStoreKv(Half dt, void* qkv, const float* inv_freq, const AttentionShape& shape,
                           const PagedKv& kv, cudaStream_t stream);

// Causal attention of the n new tokens (q from qkv, row stride (heads + 2 kv_heads) * hd) over
// positions [0, start + t] each, K and V read from the pages; out is [n][heads * hd]. Query head h
// reads KV head h / (heads / kv_heads). Scores are scaled by 1 / sqrt(head_dim), softmax in fp32.
// Tensor-core tiles (wmma): head_dim must be one of AttentionHeadDimSupported's.
cudaError_t PagedAttention(Half dt, const void* qkv, const AttentionShape& shape, const PagedKv& kv, void* out,
                           cudaStream_t stream);
bool AttentionHeadDimSupported(uint32_t head_dim);  // 16, 32, 64, 128, 256

// out[t][i] = half(silu(g) * u) with g = gate_up[t][i], u = gate_up[t][inter + i].
cudaError_t SwiGlu(Half dt, const void* gate_up, uint32_t n, uint32_t inter, void* out, cudaStream_t stream);

}  // namespace kvstash::node::cuda
