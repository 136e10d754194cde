// Gather and scatter of paged KV on the GPU: the device counterpart of kv_copy_host.h, with the same
// arguments and the same results byte for byte.
//
// The cache (layout.layer_bases) must be device memory; block buffers may be device memory or
// pinned host memory (reached through unified addressing). Many blocks go in one launch (up to
// kMaxItemsPerLaunch items and kMaxLayersPerLaunch layers; larger calls are split into several
// launches on the same stream). Every access is as wide as the alignment of addresses and strides
// allows, 16 bytes for any realistic cache (KvLayout::AccessWidth).
//
// The copy is asynchronous on `stream`: the pages and buffer addresses travel by value inside the
// kernel parameters, so the host spans may be reused as soon as the call returns, but the buffers'
// bytes are valid only once the stream reaches that point.
//
// Thread-safety: concurrent calls are safe when they write disjoint memory.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "gpu/kv_layout.h"

namespace kvstash::gpu {

inline constexpr size_t kMaxItemsPerLaunch = 512;
inline constexpr size_t kMaxLayersPerLaunch = 128;

// INVALID_ARGUMENT from KvLayout::Validate (nothing launched); INTERNAL when a launch fails.
Status DeviceGather(const KvLayout& layout, std::span<const int32_t> pages, std::span<std::byte* const> block_buffers,
                    const LayerRange& layers, cudaStream_t stream);
Status DeviceScatter(const KvLayout& layout, std::span<const int32_t> pages,
                     std::span<const std::byte* const> block_buffers, const LayerRange& layers,
                     cudaStream_t stream);

}  // namespace kvstash::gpu
