// KvPagePool: the paged KV cache of one node — one preallocated pool of fixed-size pages, each
// holding `page_tokens` tokens of K and V for every layer. A sequence owns a page table (page
// indices in token order); the engine reads and writes KV through it.
//
// Page layout: [layer][K|V][kv_head][token in page][head_dim], elements of geometry.element_bytes
// (4 for the cpu engine's fp32; the model's 2 for emulated and cuda). A store block of B tokens is
// the B / page_tokens consecutive pages of a sequence, their bytes concatenated in that order, so a
// block moves between the store and the pool with one copy per page (ReadPage / WritePage, which
// work whether the pages live in host memory or in HBM).
//
// Thread-safety: Allocate/Free/free_pages are thread-safe; page contents are the caller's to
// synchronise (a page belongs to one sequence at a time).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "common/mutex.h"
#include "kvstash/result.h"
#include "node/model_config.h"
#include "node/page_memory.h"

namespace kvstash::node {

// The shape of one token's KV.
struct KvGeometry {
  uint32_t layers = 0, kv_heads = 0, head_dim = 0, element_bytes = 4;

  static KvGeometry Fp32(const ModelConfig& config) {
    return {config.num_hidden_layers, config.num_key_value_heads, config.head_dim(), 4};
  }
  uint64_t BytesPerToken() const { return uint64_t{2} * layers * kv_heads * head_dim * element_bytes; }
};

class KvPagePool {
 public:
  // A host pool of fp32 KV for `config` (the cpu engine's). Aborts if the memory cannot be mapped.
  KvPagePool(const ModelConfig& config, uint32_t page_tokens, size_t pages);
  // Any geometry over memory the caller allocated (at least pages * page bytes).
  // INVALID_ARGUMENT for an empty geometry, page_tokens or pages of 0, or memory that is too small.
  static Result<std::unique_ptr<KvPagePool>> Create(const KvGeometry& geometry, uint32_t page_tokens, size_t pages,
                                                    std::unique_ptr<PageMemory> memory);

  const KvGeometry& geometry() const { return geometry_; }
  uint32_t page_tokens() const { return page_tokens_; }
  size_t pages() const {
    MutexLock lock(mu_);
    return free_flags_.size();
  }
  size_t free_pages() const;
  // Bytes of K (or V) of one layer in one page: kv_heads * page_tokens * head_dim elements.
  size_t plane_bytes() const { return plane_bytes_; }
  size_t page_bytes() const { return page_bytes_; }
  bool host_accessible() const { return memory_->host_accessible(); }

  std::optional<uint32_t> Allocate();
  // Allocates `n` pages or none.
  std::optional<std::vector<uint32_t>> AllocateMany(size_t n);
  void Free(uint32_t page);
  void FreeAll(std::span<const uint32_t> pages);

  // K (kv = 0) or V (kv = 1) of `layer` in `page`: [kv_head][token in page][head_dim]. A device
  // address when the memory is not host-accessible.
  std::byte* Plane(uint32_t page, uint32_t layer, uint32_t kv) {
    return memory_->data() + page * page_bytes_ + (2 * size_t{layer} + kv) * plane_bytes_;
  }
  // fp32 views for host pools of element_bytes 4 (the cpu engine).
  float* K(uint32_t page, uint32_t layer) { return reinterpret_cast<float*>(Plane(page, layer, 0)); }
  float* V(uint32_t page, uint32_t layer) { return reinterpret_cast<float*>(Plane(page, layer, 1)); }
  const float* K(uint32_t page, uint32_t layer) const { return const_cast<KvPagePool*>(this)->K(page, layer); }
  const float* V(uint32_t page, uint32_t layer) const { return const_cast<KvPagePool*>(this)->V(page, layer); }

  // The whole page (all layers, K and V) to or from host bytes of page_bytes(). REQUIRES: page < pages().
  Status ReadPage(uint32_t page, std::span<std::byte> out) const;
  Status WritePage(uint32_t page, std::span<const std::byte> bytes);
  // Layers [first_layer, first_layer + layers) of a page (K and V of each: one contiguous range of
  // layers × 2 × plane_bytes() bytes). INVALID_ARGUMENT for a range or size that does not fit.
  Status ReadLayers(uint32_t page, uint32_t first_layer, uint32_t layers, std::span<std::byte> out) const;
  Status WriteLayers(uint32_t page, uint32_t first_layer, uint32_t layers, std::span<const std::byte> bytes);

 private:
  KvPagePool(const KvGeometry& geometry, uint32_t page_tokens, size_t pages, std::unique_ptr<PageMemory> memory);

  KvGeometry geometry_;
  uint32_t page_tokens_;
  size_t plane_bytes_;
  size_t page_bytes_;
  std::unique_ptr<PageMemory> memory_;
  mutable Mutex mu_;
  std::vector<bool> free_flags_ GUARDED_BY(mu_);
  std::vector<uint32_t> free_list_ GUARDED_BY(mu_);
};

}  // namespace kvstash::node
