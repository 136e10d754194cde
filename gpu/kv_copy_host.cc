#include "gpu/kv_copy_host.h"

#include <cstring>
#include <vector>

namespace kvstash::gpu {

Status HostGather(const KvLayout& layout, std::span<const int32_t> pages, std::span<std::byte* const> block_buffers,
                  const LayerRange& layers) {
  const std::vector<const std::byte*> views(block_buffers.begin(), block_buffers.end());
  KVSTASH_RETURN_IF_ERROR(layout.Validate(pages, views, layers, /*writes_cache=*/false));
  const LayerRange r = layout.Clamp(layers);
  for (size_t i = 0; i < pages.size(); ++i) {
    for (uint32_t l = r.first; l < r.last; ++l) {
      for (uint32_t kv = 0; kv < 2; ++kv) {
        std::memcpy(block_buffers[i] + layout.ChunkOffsetInBlock(l, kv),
                    layout.ChunkAddress(static_cast<uint32_t>(pages[i]), l, kv), layout.chunk_bytes());
      }
    }
  }
  return Status::Ok();
}

Status HostScatter(const KvLayout& layout, std::span<const int32_t> pages,
                   std::span<const std::byte* const> block_buffers, const LayerRange& layers) {
  KVSTASH_RETURN_IF_ERROR(layout.Validate(pages, block_buffers, layers, /*writes_cache=*/true));
  const LayerRange r = layout.Clamp(layers);
  for (size_t i = 0; i < pages.size(); ++i) {
    for (uint32_t l = r.first; l < r.last; ++l) {
      for (uint32_t kv = 0; kv < 2; ++kv) {
        std::memcpy(layout.ChunkAddress(static_cast<uint32_t>(pages[i]), l, kv),
                    block_buffers[i] + layout.ChunkOffsetInBlock(l, kv), layout.chunk_bytes());
      }
    }
  }
  return Status::Ok();
}

}  // namespace kvstash::gpu
