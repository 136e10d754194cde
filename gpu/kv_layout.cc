#include "gpu/kv_layout.h"

#include <algorithm>
#include <unordered_set>
#include <utility>
#include <vector>

namespace kvstash::gpu {

namespace {

// a * b, or false when it overflows 64 bits.
bool MulChecked(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }

Status CheckShape(const KvCacheShape& s) {
  if (s.num_layers == 0 || s.num_pages == 0 || s.page_tokens == 0 || s.num_kv_heads == 0 || s.head_dim == 0) {
    return InvalidArgument("KV cache shape has a zero dimension (layers " + std::to_string(s.num_layers) +
                           ", pages " + std::to_string(s.num_pages) + ", page_tokens " +
                           std::to_string(s.page_tokens) + ", kv_heads " + std::to_string(s.num_kv_heads) +
                           ", head_dim " + std::to_string(s.head_dim) + ")");
  }
  if (s.dtype_bytes != 1 && s.dtype_bytes != 2 && s.dtype_bytes != 4) {
    return InvalidArgument("dtype must be 1, 2 or 4 bytes, not " + std::to_string(s.dtype_bytes));
  }
  uint64_t total = 0;
  if (!MulChecked(s.chunk_bytes(), uint64_t{s.num_layers} * 2, &total) ||
      !MulChecked(total, s.num_pages, &total)) {
    return InvalidArgument("KV cache shape overflows 64-bit byte counts");
  }
  return Status::Ok();
}

uint32_t WidestDividing(uint64_t v) {
  for (uint32_t w : {16u, 8u, 4u, 2u}) {
    if (v % w == 0) return w;
  }
  return 1;
}

}  // namespace

std::string_view ToString(KvLayoutKind kind) {
  switch (kind) {
    case KvLayoutKind::kVllmPerLayer: return "vllm-per-layer";
    case KvLayoutKind::kLayerMajor: return "layer-major";
    case KvLayoutKind::kPageMajor: return "page-major";
  }
  return "unknown";
}

Result<KvLayoutKind> ParseKvLayoutKind(std::string_view name) {
  for (auto kind : {KvLayoutKind::kVllmPerLayer, KvLayoutKind::kLayerMajor, KvLayoutKind::kPageMajor}) {
    if (name == ToString(kind)) return kind;
  }
  return InvalidArgument("unknown KV layout '" + std::string(name) +
                         "' (expected vllm-per-layer, layer-major or page-major)");
}

uint64_t KvCacheShape::chunk_bytes() const {
  return uint64_t{page_tokens} * num_kv_heads * head_dim * dtype_bytes;
}

uint64_t KvCacheShape::block_bytes() const { return uint64_t{num_layers} * 2 * chunk_bytes(); }

Result<KvLayout> KvLayout::VllmPerLayer(const KvCacheShape& shape, std::span<void* const> layer_tensors) {
  KVSTASH_RETURN_IF_ERROR(CheckShape(shape));
  if (layer_tensors.size() != shape.num_layers) {
    return InvalidArgument("vllm-per-layer needs one tensor per layer: got " + std::to_string(layer_tensors.size()) +
                           " for " + std::to_string(shape.num_layers) + " layers");
  }
  KvLayout layout;
  layout.kind_ = KvLayoutKind::kVllmPerLayer;
  layout.shape_ = shape;
  layout.chunk_bytes_ = shape.chunk_bytes();
  layout.page_stride_ = layout.chunk_bytes_;
  layout.kv_stride_ = layout.chunk_bytes_ * shape.num_pages;
  std::unordered_set<uint64_t> seen;
  for (size_t l = 0; l < layer_tensors.size(); ++l) {
    const auto addr = reinterpret_cast<uint64_t>(layer_tensors[l]);
    if (addr == 0) return InvalidArgument("layer " + std::to_string(l) + "'s tensor is null");
    if (!seen.insert(addr).second) {
      return InvalidArgument("layer " + std::to_string(l) + "'s tensor is another layer's tensor");
    }
    layout.layer_bases_.push_back(addr);
  }
  return layout;
}

Result<KvLayout> KvLayout::LayerMajor(const KvCacheShape& shape, void* base) {
  KVSTASH_RETURN_IF_ERROR(CheckShape(shape));
  if (base == nullptr) return InvalidArgument("layer-major cache base is null");
  KvLayout layout;
  layout.kind_ = KvLayoutKind::kLayerMajor;
  layout.shape_ = shape;
  layout.chunk_bytes_ = shape.chunk_bytes();
  layout.page_stride_ = layout.chunk_bytes_;
  layout.kv_stride_ = layout.chunk_bytes_ * shape.num_pages;
  for (uint32_t l = 0; l < shape.num_layers; ++l) {
    layout.layer_bases_.push_back(reinterpret_cast<uint64_t>(base) + uint64_t{l} * 2 * layout.kv_stride_);
  }
  return layout;
}

Result<KvLayout> KvLayout::PageMajor(const KvCacheShape& shape, void* base) {
  KVSTASH_RETURN_IF_ERROR(CheckShape(shape));
  if (base == nullptr) return InvalidArgument("page-major cache base is null");
  KvLayout layout;
  layout.kind_ = KvLayoutKind::kPageMajor;
  layout.shape_ = shape;
  layout.chunk_bytes_ = shape.chunk_bytes();
  layout.kv_stride_ = layout.chunk_bytes_;
  layout.page_stride_ = layout.chunk_bytes_ * 2 * shape.num_layers;
  for (uint32_t l = 0; l < shape.num_layers; ++l) {
    layout.layer_bases_.push_back(reinterpret_cast<uint64_t>(base) + uint64_t{l} * 2 * layout.chunk_bytes_);
  }
  return layout;
}

Result<KvLayout> KvLayout::Make(KvLayoutKind kind, const KvCacheShape& shape, std::span<void* const> bases) {
  if (kind == KvLayoutKind::kVllmPerLayer) return VllmPerLayer(shape, bases);
  if (bases.size() != 1) {
    return InvalidArgument(std::string(ToString(kind)) + " needs exactly one cache tensor, got " +
                           std::to_string(bases.size()));
  }
  return kind == KvLayoutKind::kLayerMajor ? LayerMajor(shape, bases[0]) : PageMajor(shape, bases[0]);
}

std::byte* KvLayout::ChunkAddress(uint32_t page, uint32_t layer, uint32_t kv) const {
  return reinterpret_cast<std::byte*>(layer_bases_[layer] + kv * kv_stride_ + uint64_t{page} * page_stride_);
}

LayerRange KvLayout::Clamp(const LayerRange& layers) const {
  LayerRange r = layers;
  if (r.last > shape_.num_layers) r.last = shape_.num_layers;
  return r;
}

uint64_t KvLayout::LayerSliceBytes(const LayerRange& layers) const {
  const LayerRange r = Clamp(layers);
  return r.first >= r.last ? 0 : uint64_t{r.last - r.first} * 2 * chunk_bytes_;
}

uint64_t KvLayout::LayerSliceOffset(const LayerRange& layers) const { return ChunkOffsetInBlock(layers.first, 0); }

uint64_t KvLayout::TensorBytes() const {
  const uint64_t per_layer = 2 * kv_stride_;
  if (kind_ == KvLayoutKind::kVllmPerLayer) return per_layer;
  return chunk_bytes_ * 2 * shape_.num_layers * shape_.num_pages;
}

uint32_t KvLayout::AccessWidth(std::span<const std::byte* const> block_buffers) const {
  uint64_t bits = chunk_bytes_ | kv_stride_ | page_stride_ | 16;
  for (uint64_t base : layer_bases_) bits |= base;
  for (const std::byte* b : block_buffers) bits |= reinterpret_cast<uint64_t>(b);
  return WidestDividing(bits);
}

Status KvLayout::Validate(std::span<const int32_t> pages, std::span<const std::byte* const> block_buffers,
                          const LayerRange& layers, bool writes_cache) const {
  if (pages.size() != block_buffers.size()) {
    return InvalidArgument("one block buffer per page: " + std::to_string(pages.size()) + " pages, " +
                           std::to_string(block_buffers.size()) + " buffers");
  }
  const LayerRange r = Clamp(layers);
  if (r.first >= r.last) {
    return InvalidArgument("empty layer range [" + std::to_string(layers.first) + ", " + std::to_string(r.last) +
                           ") of " + std::to_string(shape_.num_layers) + " layers");
  }
  for (size_t i = 0; i < pages.size(); ++i) {
    if (pages[i] < 0 || static_cast<uint32_t>(pages[i]) >= shape_.num_pages) {
      return InvalidArgument("page " + std::to_string(pages[i]) + " (item " + std::to_string(i) +
                             ") is outside the cache's " + std::to_string(shape_.num_pages) + " pages");
    }
    if (block_buffers[i] == nullptr) return InvalidArgument("block buffer " + std::to_string(i) + " is null");
  }
  if (writes_cache) {
    // Runs on every scatter call, on the host before the launch: a bitmap over the cache's pages
    // (a hash set here cost 18 µs for 512 pages, 5% of a 1 GiB scatter); a sorted copy for caches
    // whose bitmap would be larger than 2 MiB.
    auto twice = [&](int32_t page) {
      bool first = true;
      for (size_t i = 0; i < pages.size(); ++i) {
        if (pages[i] == page && !std::exchange(first, false)) {
          return InvalidArgument("page " + std::to_string(page) + " is listed twice (item " + std::to_string(i) +
                                 "): two writers of one page would race");
        }
      }
      return Status::Ok();
    };
    if (shape_.num_pages <= (uint32_t{1} << 24)) {
      std::vector<uint64_t> seen((shape_.num_pages + 63) / 64, 0);
      for (int32_t page : pages) {
        uint64_t& word = seen[static_cast<uint32_t>(page) / 64];
        const uint64_t bit = uint64_t{1} << (static_cast<uint32_t>(page) % 64);
        if (word & bit) return twice(page);
        word |= bit;
      }
    } else {
      std::vector<int32_t> sorted(pages.begin(), pages.end());
      std::sort(sorted.begin(), sorted.end());
      auto dup = std::adjacent_find(sorted.begin(), sorted.end());
      if (dup != sorted.end()) return twice(*dup);
    }
  }
  return Status::Ok();
}

}  // namespace kvstash::gpu
