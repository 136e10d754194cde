#include "node/kv_pages.h"

namespace kvstash::node {

KvPagePool::KvPagePool(const ModelConfig& config, uint32_t page_tokens, size_t pages)
    : page_tokens_(page_tokens),
      plane_floats_(static_cast<size_t>(config.num_key_value_heads) * page_tokens * config.head_dim()),
      page_floats_(2 * static_cast<size_t>(config.num_hidden_layers) * plane_floats_),
      storage_(pages * page_floats_, 0.0f),
      free_flags_(pages, true) {
  free_list_.reserve(pages);
  for (size_t p = pages; p-- > 0;) free_list_.push_back(static_cast<uint32_t>(p));
}

size_t KvPagePool::free_pages() const {
  std::lock_guard lock(mu_);
  return free_list_.size();
}

std::optional<uint32_t> KvPagePool::Allocate() {
  std::lock_guard lock(mu_);
  if (free_list_.empty()) return std::nullopt;
  const uint32_t page = free_list_.back();
  free_list_.pop_back();
  free_flags_[page] = false;
  return page;
}

std::optional<std::vector<uint32_t>> KvPagePool::AllocateMany(size_t n) {
  std::lock_guard lock(mu_);
  if (free_list_.size() < n) return std::nullopt;
  std::vector<uint32_t> out(free_list_.end() - static_cast<std::ptrdiff_t>(n), free_list_.end());
  free_list_.resize(free_list_.size() - n);
  for (uint32_t page : out) free_flags_[page] = false;
  return out;
}

void KvPagePool::Free(uint32_t page) {
  std::lock_guard lock(mu_);
  if (page >= free_flags_.size() || free_flags_[page]) return;  // double free: ignored, never corrupts the list
  free_flags_[page] = true;
  free_list_.push_back(page);
}

void KvPagePool::FreeAll(std::span<const uint32_t> pages) {
  for (uint32_t page : pages) Free(page);
}

}  // namespace kvstash::node
