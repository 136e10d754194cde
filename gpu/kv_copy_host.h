// Gather and scatter of paged KV on the CPU, with memcpy: the reference the CUDA kernels are tested
// against, and the path the Python module takes for caches in host memory.
//
// Gather copies, for each i, page pages[i] of every layer in `layers` from the cache into block
// buffer block_buffers[i] (layout in kv_layout.h); scatter copies the other way. Block buffers
// must hold layout.block_bytes(); a layer range touches only its slice of each buffer.
//
// Thread-safety: concurrent calls are safe when they write disjoint memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "gpu/kv_layout.h"

namespace kvstash::gpu {

// INVALID_ARGUMENT from KvLayout::Validate; copies nothing then.
Status HostGather(const KvLayout& layout, std::span<const int32_t> pages, std::span<std::byte* const> block_buffers,
                  const LayerRange& layers = {});
Status HostScatter(const KvLayout& layout, std::span<const int32_t> pages,
                   std::span<const std::byte* const> block_buffers, const LayerRange& layers = {});

}  // namespace kvstash::gpu
