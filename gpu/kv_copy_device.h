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

// How a copy walks its work. Every tuning moves the same bytes; they differ only in speed. The
// defaults (DefaultKvCopyTuning) are the fastest measured on an H100 (docs/GPU.md), and gpu_bench
// compares the others against them.
struct KvCopyTuning {
  // Work order. Pages are taken in groups of group_pages; inside a group the chunk (layer, K/V) is
  // the outer loop and the page the inner one, so the CTAs running at one time share a layer's K
  // (or V) across many pages. 1: all of one page's chunks, then the next page.
  uint32_t group_pages = 1;
  // Order the pages (with their buffers) by page index first, so neighbouring work touches
  // neighbouring cache addresses.
  bool sort_pages = false;
  // CTA shape: 256 threads x 4, 128 x 8 or 64 x 16 16-byte loads in flight per thread (16 KiB per
  // tile each way).
  uint32_t threads = 128;
  // CTAs per SM the grid is sized for (grid-stride beyond that), 1..64. Applies to both kernels.
  uint32_t ctas_per_sm = 6;
  // Hopper bulk copies: 0 (off) or 2..kMaxBulkStages. When on, and the device is sm_90 or newer, and
  // every address, stride and chunk is a multiple of 16 bytes (AccessWidth 16), chunks travel
  // global -> shared -> global through the copy engine of each SM (cp.async.bulk, completion on an
  // mbarrier, stores as bulk groups): tiles of bulk_tile_bytes, bulk_stages shared-memory buffers per
  // CTA, one thread of each CTA issuing; ctas_per_sm CTAs per SM. Otherwise the load/store kernel
  // above runs (`threads`), so a bulk tuning is always valid where a plain one is.
  uint32_t bulk_stages = 0;
  // 16..65536, a multiple of 16; bulk_stages * bulk_tile_bytes <= kMaxBulkSharedBytes.
  uint32_t bulk_tile_bytes = 16384;
};
inline constexpr uint32_t kMaxBulkStages = 16;
inline constexpr uint32_t kMaxBulkSharedBytes = 200 * 1024;
KvCopyTuning DefaultKvCopyTuning(bool gather);

// Whether `tuning` would run the bulk-copy kernel for these arguments on the current device.
bool KvCopyUsesBulk(const KvLayout& layout, std::span<const std::byte* const> block_buffers,
                    const KvCopyTuning& tuning);

// INVALID_ARGUMENT from KvLayout::Validate or for a tuning out of range (nothing launched);
// INTERNAL when a launch fails. Without a tuning, DefaultKvCopyTuning's.
Status DeviceGather(const KvLayout& layout, std::span<const int32_t> pages, std::span<std::byte* const> block_buffers,
                    const LayerRange& layers, cudaStream_t stream);
Status DeviceScatter(const KvLayout& layout, std::span<const int32_t> pages,
                     std::span<const std::byte* const> block_buffers, const LayerRange& layers,
                     cudaStream_t stream);
Status DeviceGather(const KvLayout& layout, std::span<const int32_t> pages, std::span<std::byte* const> block_buffers,
                    const LayerRange& layers, const KvCopyTuning& tuning, cudaStream_t stream);
Status DeviceScatter(const KvLayout& layout, std::span<const int32_t> pages,
                     std::span<const std::byte* const> block_buffers, const LayerRange& layers,
                     const KvCopyTuning& tuning, cudaStream_t stream);

}  // namespace kvstash::gpu
