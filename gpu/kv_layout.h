// KvLayout: byte addressing of an inference engine's paged KV cache, and of the contiguous block
// buffers kvstash stores. Host-only: no CUDA headers, built on every machine.
//
// An engine keeps, per layer and for K and V, `num_pages` pages of `page_tokens` tokens; one page of
// one layer's K (or V) is a "chunk" of page_tokens * num_kv_heads * head_dim * dtype_bytes contiguous
// bytes. Three layouts are described by the same three numbers per chunk address:
//
//   chunk(page, layer, kv) = layer_bases[layer] + kv * kv_stride + page * page_stride
//
//   kVllmPerLayer  one tensor per layer, [2, num_pages, page_tokens, heads, head_dim] (vLLM):
//                  layer_bases = the layers' tensors, kv_stride = num_pages * chunk, page_stride = chunk
//   kLayerMajor    one tensor, [num_layers, 2, num_pages, page_tokens, heads, head_dim]:
//                  layer_bases[l] = base + l * 2 * num_pages * chunk, strides as above
//   kPageMajor     one tensor, [num_pages, num_layers, 2, page_tokens, heads, head_dim] (one page of
//                  every layer together): layer_bases[l] = base + l * 2 * chunk, kv_stride = chunk,
//                  page_stride = num_layers * 2 * chunk
//
// A block buffer (what one kvstash block holds for one page) is always
//   [num_layers, 2, page_tokens, heads, head_dim], so chunk(layer, kv) sits at (layer * 2 + kv) * chunk,
// which makes a layer range [first, last) one contiguous slice of the buffer (layer-wise streaming).
//
// Thread-safety: immutable after creation; safe for concurrent use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstash/result.h"

namespace kvstash::gpu {

enum class KvLayoutKind { kVllmPerLayer, kLayerMajor, kPageMajor };
std::string_view ToString(KvLayoutKind kind);  // "vllm-per-layer", "layer-major", "page-major"
// Parses the names above; INVALID_ARGUMENT otherwise.
Result<KvLayoutKind> ParseKvLayoutKind(std::string_view name);

struct KvCacheShape {
  uint32_t num_layers = 0;
  uint32_t num_pages = 0;    // pages per layer in the engine's pool
  uint32_t page_tokens = 0;  // vLLM's block_size
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t dtype_bytes = 0;  // 1, 2 or 4

  // page_tokens * num_kv_heads * head_dim * dtype_bytes.
  uint64_t chunk_bytes() const;
  // One block buffer: num_layers * 2 * chunk_bytes().
  uint64_t block_bytes() const;
};

// Which layers a copy moves: [first, last). The default is every layer.
struct LayerRange {
  uint32_t first = 0;
  uint32_t last = UINT32_MAX;  // clamped to num_layers
};

class KvLayout {
 public:
  // INVALID_ARGUMENT for a zero dimension, a dtype other than 1/2/4 bytes, a null or repeated
  // layer tensor, a layer count that differs from shape.num_layers, or sizes whose byte counts
  // overflow 64 bits.
  static Result<KvLayout> VllmPerLayer(const KvCacheShape& shape, std::span<void* const> layer_tensors);
  static Result<KvLayout> LayerMajor(const KvCacheShape& shape, void* base);
  static Result<KvLayout> PageMajor(const KvCacheShape& shape, void* base);
  // Any of the three by kind; `bases` holds one pointer per layer for kVllmPerLayer, else one.
  static Result<KvLayout> Make(KvLayoutKind kind, const KvCacheShape& shape, std::span<void* const> bases);

  KvLayoutKind kind() const { return kind_; }
  const KvCacheShape& shape() const { return shape_; }
  uint64_t chunk_bytes() const { return chunk_bytes_; }
  uint64_t block_bytes() const { return shape_.block_bytes(); }
  uint64_t kv_stride() const { return kv_stride_; }
  uint64_t page_stride() const { return page_stride_; }
  const std::vector<uint64_t>& layer_bases() const { return layer_bases_; }

  // Address of one chunk in the engine's cache. REQUIRES: arguments in range.
  std::byte* ChunkAddress(uint32_t page, uint32_t layer, uint32_t kv) const;
  // Offset of one chunk inside a block buffer.
  uint64_t ChunkOffsetInBlock(uint32_t layer, uint32_t kv) const { return (uint64_t{layer} * 2 + kv) * chunk_bytes_; }
  // Bytes of a block buffer a copy of `layers` touches, and where they start.
  uint64_t LayerSliceBytes(const LayerRange& layers) const;
  uint64_t LayerSliceOffset(const LayerRange& layers) const;

  // Bytes of the engine's cache the layout spans for one layer tensor (kVllmPerLayer) or the whole
  // tensor (the others): what a caller must have allocated.
  uint64_t TensorBytes() const;

  // The widest access (16, 8, 4, 2 or 1 bytes) that every chunk address, stride and the given block
  // buffers are aligned to: the kernels' vector width.
  uint32_t AccessWidth(std::span<const std::byte* const> block_buffers) const;

  // Checks a copy's arguments: one buffer per page, 0 <= page < num_pages, non-null buffers, a
  // non-empty layer range inside [0, num_layers), and, when the copy writes the cache (scatter), no
  // page listed twice (two writers of one page would race). INVALID_ARGUMENT naming the first
  // offender.
  Status Validate(std::span<const int32_t> pages, std::span<const std::byte* const> block_buffers,
                  const LayerRange& layers, bool writes_cache) const;

  // Clamped copy of `layers`.
  LayerRange Clamp(const LayerRange& layers) const;

 private:
  KvLayout() = default;
  KvLayoutKind kind_ = KvLayoutKind::kVllmPerLayer;
  KvCacheShape shape_;
  uint64_t chunk_bytes_ = 0;
  uint64_t kv_stride_ = 0;
  uint64_t page_stride_ = 0;
  std::vector<uint64_t> layer_bases_;
};

}  // namespace kvstash::gpu
