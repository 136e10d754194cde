#include <algorithm>
#include <vector>

#include "gpu/cuda_util.h"
#include "gpu/kv_copy_device.h"

namespace kvstash::gpu {

namespace {

// Build-time choice of access hints (gpu_bench compared them; docs/GPU.md records the figures):
//   KVSTASH_KV_COPY_HINT    0: generic loads/stores; 1: global, streaming (evict-first) loads and
//                           stores; 2: global read-only-path loads, streaming stores
// Run-time choices (work order, CTA shape, grid size) are KvCopyTuning's.
#ifndef KVSTASH_KV_COPY_HINT
#define KVSTASH_KV_COPY_HINT 1
#endif

// Passed by value as a __grid_constant__ parameter (about 7 KiB: CUDA 12.1+ allows 32 KiB), so a
// launch needs no argument upload and the arrays are read from the constant bank.
struct CopyArgs {
  uint64_t layer_bases[kMaxLayersPerLaunch];  // cache base of each layer of the range
  uint64_t buffers[kMaxItemsPerLaunch];       // block buffer of each item
  int32_t pages[kMaxItemsPerLaunch];
  uint64_t kv_stride;
  uint64_t page_stride;
  uint64_t chunk_bytes;
  uint64_t buffer_offset;  // where the range's first layer starts in a block buffer
  uint32_t items;
  uint32_t layers;
  uint32_t group;  // KvCopyTuning::group_pages, at least 1
};

template <typename V>
__device__ __forceinline__ V Load(const V* p) {
#if KVSTASH_KV_COPY_HINT == 1
  return __ldcs(p);
#elif KVSTASH_KV_COPY_HINT == 2
  return __ldg(p);
#else
  return *p;
#endif
}

template <typename V>
__device__ __forceinline__ void Store(V* p, const V& v) {
#if KVSTASH_KV_COPY_HINT == 0
  *p = v;
#else
  __stcs(p, v);
#endif
}

// Work is cut into tiles of kThreads * kUnroll vectors of one chunk (one page of one layer's K or
// V); blocks walk the tiles grid-stride, so one launch spans any number of pages and layers. Tile
// order: items (pages) in groups of a.group; inside a group the chunk (layer, K/V) is the outer
// index, then the item, then the tile within the chunk. a.group = 1 is one page after another;
// a.group = items has the CTAs running together all on one layer's K (or V) of neighbouring pages
// (the host sorts the pages), so concurrent writes of a scatter land in one region of the cache.
template <typename V, bool kGather, int kThreads, int kUnroll>
__global__ void __launch_bounds__(kThreads) CopyKernel(const __grid_constant__ CopyArgs a) {
  constexpr uint64_t kTile = uint64_t{kThreads} * kUnroll;
  const uint64_t vecs = a.chunk_bytes / sizeof(V);
  const uint64_t tiles_per_chunk = (vecs + kTile - 1) / kTile;
  const uint32_t chunks_per_item = a.layers * 2;
  const uint64_t tiles_per_item = uint64_t{chunks_per_item} * tiles_per_chunk;
  const uint64_t total = uint64_t{a.items} * tiles_per_item;
  const uint64_t group_tiles = uint64_t{a.group} * tiles_per_item;
  for (uint64_t t = blockIdx.x; t < total; t += gridDim.x) {
    const uint64_t g = t / group_tiles;
    const uint32_t first_item = static_cast<uint32_t>(g) * a.group;
    const uint32_t n = min(a.group, a.items - first_item);  // items in this group (the last may be short)
    const uint64_t w = t - g * group_tiles;
    const uint64_t per_chunk_index = uint64_t{n} * tiles_per_chunk;
    const uint32_t lk = static_cast<uint32_t>(w / per_chunk_index);
    const uint64_t r = w - uint64_t{lk} * per_chunk_index;
    const uint64_t in_group = r / tiles_per_chunk;
    const uint64_t tile = r - in_group * tiles_per_chunk;
    const uint32_t item = first_item + static_cast<uint32_t>(in_group);
    const uint64_t cache = a.layer_bases[lk >> 1] + (lk & 1) * a.kv_stride +
                           static_cast<uint64_t>(a.pages[item]) * a.page_stride;
    const uint64_t buffer = a.buffers[item] + a.buffer_offset + uint64_t{lk} * a.chunk_bytes;
    const V* src = reinterpret_cast<const V*>(kGather ? cache : buffer);
    V* dst = reinterpret_cast<V*>(kGather ? buffer : cache);
    const uint64_t first = tile * kTile + threadIdx.x;
    V v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const uint64_t i = first + static_cast<uint64_t>(u) * kThreads;
      if (i < vecs) v[u] = Load(src + i);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const uint64_t i = first + static_cast<uint64_t>(u) * kThreads;
      if (i < vecs) Store(dst + i, v[u]);
    }
  }
}

template <bool kGather, int kThreads, int kUnroll>
void LaunchShape(const CopyArgs& args, uint32_t width, unsigned ctas_per_sm, int sms, cudaStream_t stream) {
  constexpr uint64_t kTile = uint64_t{kThreads} * kUnroll;
  const uint64_t vecs = args.chunk_bytes / width;
  const uint64_t tiles = uint64_t{args.items} * args.layers * 2 * ((vecs + kTile - 1) / kTile);
  const unsigned grid = static_cast<unsigned>(std::min<uint64_t>(tiles, uint64_t(sms) * ctas_per_sm));
  switch (width) {
    case 16: CopyKernel<uint4, kGather, kThreads, kUnroll><<<grid, kThreads, 0, stream>>>(args); break;
    case 8: CopyKernel<uint2, kGather, kThreads, kUnroll><<<grid, kThreads, 0, stream>>>(args); break;
    case 4: CopyKernel<unsigned int, kGather, kThreads, kUnroll><<<grid, kThreads, 0, stream>>>(args); break;
    case 2: CopyKernel<unsigned short, kGather, kThreads, kUnroll><<<grid, kThreads, 0, stream>>>(args); break;
    default: CopyKernel<unsigned char, kGather, kThreads, kUnroll><<<grid, kThreads, 0, stream>>>(args); break;
  }
}

template <bool kGather>
Status LaunchOne(const CopyArgs& args, uint32_t width, const KvCopyTuning& tuning, cudaStream_t stream) {
  int device = 0;
  int sms = 0;
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&device), "cudaGetDevice"));
  KVSTASH_RETURN_IF_ERROR(
      CudaStatus(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute"));
  if (tuning.threads == 64) {
    LaunchShape<kGather, 64, 16>(args, width, tuning.ctas_per_sm, sms, stream);
  } else if (tuning.threads == 128) {
    LaunchShape<kGather, 128, 8>(args, width, tuning.ctas_per_sm, sms, stream);
  } else {
    LaunchShape<kGather, 256, 4>(args, width, tuning.ctas_per_sm, sms, stream);
  }
  return CudaStatus(cudaGetLastError(), kGather ? "launching the KV gather kernel" : "launching the KV scatter kernel");
}

template <bool kGather>
Status Copy(const KvLayout& layout, std::span<const int32_t> pages, std::span<const std::byte* const> buffers,
            const LayerRange& layers, const KvCopyTuning& tuning, cudaStream_t stream) {
  KVSTASH_RETURN_IF_ERROR(layout.Validate(pages, buffers, layers, /*writes_cache=*/!kGather));
  if (tuning.group_pages == 0 || tuning.ctas_per_sm == 0 || tuning.ctas_per_sm > 64 ||
      (tuning.threads != 64 && tuning.threads != 128 && tuning.threads != 256)) {
    return InvalidArgument("KV copy tuning: group_pages >= 1, 1 <= ctas_per_sm <= 64, threads 64, 128 or 256");
  }
  if (pages.empty()) return Status::Ok();
  const LayerRange r = layout.Clamp(layers);
  const uint32_t width = layout.AccessWidth(buffers);
  // Work order: by page index when asked (neighbouring items touch neighbouring cache addresses).
  std::vector<uint32_t> order(pages.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
  if (tuning.sort_pages) {
    std::stable_sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) { return pages[x] < pages[y]; });
  }
  CopyArgs args{};
  args.kv_stride = layout.kv_stride();
  args.page_stride = layout.page_stride();
  args.chunk_bytes = layout.chunk_bytes();
  for (uint32_t l0 = r.first; l0 < r.last; l0 += kMaxLayersPerLaunch) {
    const uint32_t l1 = std::min<uint32_t>(r.last, l0 + kMaxLayersPerLaunch);
    args.layers = l1 - l0;
    args.buffer_offset = layout.ChunkOffsetInBlock(l0, 0);
    for (uint32_t l = l0; l < l1; ++l) args.layer_bases[l - l0] = layout.layer_bases()[l];
    for (size_t i0 = 0; i0 < pages.size(); i0 += kMaxItemsPerLaunch) {
      const size_t n = std::min(pages.size() - i0, kMaxItemsPerLaunch);
      args.items = static_cast<uint32_t>(n);
      args.group = std::min<uint32_t>(tuning.group_pages, args.items);
      for (size_t i = 0; i < n; ++i) {
        args.pages[i] = pages[order[i0 + i]];
        args.buffers[i] = reinterpret_cast<uint64_t>(buffers[order[i0 + i]]);
      }
      KVSTASH_RETURN_IF_ERROR(LaunchOne<kGather>(args, width, tuning, stream));
    }
  }
  return Status::Ok();
}

}  // namespace

KvCopyTuning DefaultKvCopyTuning(bool gather) {
  // H100, gpu_bench --only variants (docs/GPU.md): 128 threads x 8 loads, 6 CTAs per SM (768
  // threads, 96 KiB in flight per SM) beat the first kernel's 256 x 4 at 8 CTAs per SM (2048
  // threads) for every dtype, gather and scatter alike; work order made no difference beyond noise.
  (void)gather;
  return KvCopyTuning{.group_pages = 1, .sort_pages = false, .threads = 128, .ctas_per_sm = 6};
}

Status DeviceGather(const KvLayout& layout, std::span<const int32_t> pages, std::span<std::byte* const> block_buffers,
                    const LayerRange& layers, cudaStream_t stream) {
  return DeviceGather(layout, pages, block_buffers, layers, DefaultKvCopyTuning(true), stream);
}

Status DeviceScatter(const KvLayout& layout, std::span<const int32_t> pages,
                     std::span<const std::byte* const> block_buffers, const LayerRange& layers,
                     cudaStream_t stream) {
  return DeviceScatter(layout, pages, block_buffers, layers, DefaultKvCopyTuning(false), stream);
}

Status DeviceGather(const KvLayout& layout, std::span<const int32_t> pages, std::span<std::byte* const> block_buffers,
                    const LayerRange& layers, const KvCopyTuning& tuning, cudaStream_t stream) {
  const std::vector<const std::byte*> views(block_buffers.begin(), block_buffers.end());
  return Copy<true>(layout, pages, views, layers, tuning, stream);
}

Status DeviceScatter(const KvLayout& layout, std::span<const int32_t> pages,
                     std::span<const std::byte* const> block_buffers, const LayerRange& layers,
                     const KvCopyTuning& tuning, cudaStream_t stream) {
  return Copy<false>(layout, pages, block_buffers, layers, tuning, stream);
}

}  // namespace kvstash::gpu
