#include "node/kv_pages.h"

#include <cstdio>
#include <cstdlib>

namespace kvstash::node {

namespace {

std::unique_ptr<PageMemory> HostMemoryOrDie(size_t bytes) {
  Result<std::unique_ptr<PageMemory>> memory = AllocateHostPageMemory(bytes);
  if (!memory.ok()) {
    std::fprintf(stderr, "KvPagePool: %s\n", memory.status().ToString().c_str());
    std::abort();
  }
  return std::move(*memory);
}

size_t PlaneBytes(const KvGeometry& g, uint32_t page_tokens) {
  return size_t{g.kv_heads} * page_tokens * g.head_dim * g.element_bytes;
}

}  // namespace

KvPagePool::KvPagePool(const ModelConfig& config, uint32_t page_tokens, size_t pages)
    : KvPagePool(KvGeometry::Fp32(config), page_tokens, pages,
                 HostMemoryOrDie(pages * 2 * config.num_hidden_layers * PlaneBytes(KvGeometry::Fp32(config), page_tokens))) {}

KvPagePool::KvPagePool(const KvGeometry& geometry, uint32_t page_tokens, size_t pages,
                       std::unique_ptr<PageMemory> memory)
    : geometry_(geometry),
      page_tokens_(page_tokens),
      plane_bytes_(PlaneBytes(geometry, page_tokens)),
      page_bytes_(2 * size_t{geometry.layers} * plane_bytes_),
      memory_(std::move(memory)),
      free_flags_(pages, true) {
  free_list_.reserve(pages);
  for (size_t p = pages; p-- > 0;) free_list_.push_back(static_cast<uint32_t>(p));
}

Result<std::unique_ptr<KvPagePool>> KvPagePool::Create(const KvGeometry& geometry, uint32_t page_tokens, size_t pages,
                                                       std::unique_ptr<PageMemory> memory) {
  if (geometry.BytesPerToken() == 0 || page_tokens == 0 || pages == 0) {
    return InvalidArgument("a KV pool needs a non-empty geometry, page_tokens >= 1 and pages >= 1");
  }
  if (pages > (size_t{1} << 32) || memory == nullptr || memory->size() / pages < page_tokens * geometry.BytesPerToken()) {
    return InvalidArgument("the KV pool's memory does not hold " + std::to_string(pages) + " pages of " +
                           std::to_string(page_tokens * geometry.BytesPerToken()) + " bytes");
  }
  return std::unique_ptr<KvPagePool>(new KvPagePool(geometry, page_tokens, pages, std::move(memory)));
}

Status KvPagePool::ReadPage(uint32_t page, std::span<std::byte> out) const {
  if (page >= pages() || out.size() != page_bytes_) return InvalidArgument("ReadPage: page or size out of range");
  return memory_->CopyOut(page * page_bytes_, out);
}

Status KvPagePool::WritePage(uint32_t page, std::span<const std::byte> bytes) {
  if (page >= pages() || bytes.size() != page_bytes_) return InvalidArgument("WritePage: page or size out of range");
  return memory_->CopyIn(page * page_bytes_, bytes);
}

Status KvPagePool::ReadLayers(uint32_t page, uint32_t first_layer, uint32_t layers, std::span<std::byte> out) const {
  const size_t bytes = size_t{layers} * 2 * plane_bytes_;
  if (page >= pages() || first_layer > geometry_.layers || layers > geometry_.layers - first_layer || out.size() != bytes) {
    return InvalidArgument("ReadLayers: page, layers or size out of range");
  }
  return memory_->CopyOut(page * page_bytes_ + size_t{first_layer} * 2 * plane_bytes_, out);
}

Status KvPagePool::WriteLayers(uint32_t page, uint32_t first_layer, uint32_t layers, std::span<const std::byte> bytes) {
  const size_t want = size_t{layers} * 2 * plane_bytes_;
  if (page >= pages() || first_layer > geometry_.layers || layers > geometry_.layers - first_layer ||
      bytes.size() != want) {
    return InvalidArgument("WriteLayers: page, layers or size out of range");
  }
  return memory_->CopyIn(page * page_bytes_ + size_t{first_layer} * 2 * plane_bytes_, bytes);
}

size_t KvPagePool::free_pages() const {
  MutexLock lock(mu_);
  return free_list_.size();
}

std::optional<uint32_t> KvPagePool::Allocate() {
  MutexLock lock(mu_);
  if (free_list_.empty()) return std::nullopt;
  const uint32_t page = free_list_.back();
  free_list_.pop_back();
  free_flags_[page] = false;
  return page;
}

std::optional<std::vector<uint32_t>> KvPagePool::AllocateMany(size_t n) {
  MutexLock lock(mu_);
  if (free_list_.size() < n) return std::nullopt;
  std::vector<uint32_t> out(free_list_.end() - static_cast<std::ptrdiff_t>(n), free_list_.end());
  free_list_.resize(free_list_.size() - n);
  for (uint32_t page : out) free_flags_[page] = false;
  return out;
}

void KvPagePool::Free(uint32_t page) {
  MutexLock lock(mu_);
  if (page >= free_flags_.size() || free_flags_[page]) return;  // double free: ignored, never corrupts the list
  free_flags_[page] = true;
  free_list_.push_back(page);
}

void KvPagePool::FreeAll(std::span<const uint32_t> pages) {
  for (uint32_t page : pages) Free(page);
}

}  // namespace kvstash::node
