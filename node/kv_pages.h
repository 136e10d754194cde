// KvPagePool: the paged KV cache of one node — one preallocated pool of fixed-size pages, each
// holding `page_tokens` tokens of K and V for every layer. A sequence owns a page table (page
// indices in token order); the engine reads and writes KV through it.
//
// Page layout (fp32): [layer][K|V][kv_head][token in page][head_dim]. A store block of B tokens is
// the B / page_tokens consecutive pages of a sequence, their bytes concatenated in that order
// (PageBytes), so a block moves between the store and the pool with one copy per page.
//
// Thread-safety: Allocate/Free/free_pages are thread-safe; page contents are the caller's to
// synchronise (a page belongs to one sequence at a time).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "node/model_config.h"

namespace kvstash::node {

class KvPagePool {
 public:
  // REQUIRES: config validated, page_tokens >= 1, pages >= 1.
  KvPagePool(const ModelConfig& config, uint32_t page_tokens, size_t pages);

  uint32_t page_tokens() const { return page_tokens_; }
  size_t pages() const { return free_flags_.size(); }
  size_t free_pages() const;
  // Floats of K (or V) of one layer in one page: kv_heads * page_tokens * head_dim.
  size_t plane_floats() const { return plane_floats_; }
  size_t page_bytes() const { return page_floats_ * sizeof(float); }

  std::optional<uint32_t> Allocate();
  // Allocates `n` pages or none.
  std::optional<std::vector<uint32_t>> AllocateMany(size_t n);
  void Free(uint32_t page);
  void FreeAll(std::span<const uint32_t> pages);

  // K (or V) of `layer` in `page`: [kv_head][token in page][head_dim].
  float* K(uint32_t page, uint32_t layer) { return Page(page) + (2 * layer) * plane_floats_; }
  float* V(uint32_t page, uint32_t layer) { return Page(page) + (2 * layer + 1) * plane_floats_; }
  const float* K(uint32_t page, uint32_t layer) const { return Page(page) + (2 * layer) * plane_floats_; }
  const float* V(uint32_t page, uint32_t layer) const { return Page(page) + (2 * layer + 1) * plane_floats_; }
  // The whole page as bytes (all layers, K and V).
  std::span<std::byte> PageBytes(uint32_t page) {
    return {reinterpret_cast<std::byte*>(Page(page)), page_bytes()};
  }

 private:
  float* Page(uint32_t page) { return storage_.data() + static_cast<size_t>(page) * page_floats_; }
  const float* Page(uint32_t page) const { return storage_.data() + static_cast<size_t>(page) * page_floats_; }

  uint32_t page_tokens_;
  size_t plane_floats_;
  size_t page_floats_;
  std::vector<float> storage_;
  mutable std::mutex mu_;
  std::vector<bool> free_flags_;      // guarded by mu_
  std::vector<uint32_t> free_list_;   // guarded by mu_
};

}  // namespace kvstash::node
