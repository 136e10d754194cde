#include <algorithm>
#include <vector>

#include "gpu/cuda_util.h"
#include "gpu/kv_copy_device.h"

namespace kvstash::gpu {

namespace {

// Build-time tuning (gpu_bench compares variants; docs/GPU.md records the choice):
//   KVSTASH_KV_COPY_UNROLL  independent 16-byte loads in flight per thread before the first store
//   KVSTASH_KV_COPY_HINT    0: generic loads/stores; 1: global, streaming (evict-first) loads and
//                           stores; 2: global read-only-path loads, streaming stores
#ifndef KVSTASH_KV_COPY_UNROLL
#define KVSTASH_KV_COPY_UNROLL 4
#endif
#ifndef KVSTASH_KV_COPY_HINT
#define KVSTASH_KV_COPY_HINT 1
#endif
constexpr int kThreads = 256;
constexpr int kUnroll = KVSTASH_KV_COPY_UNROLL;
constexpr uint64_t kTile = uint64_t{kThreads} * kUnroll;

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

// Work is cut into tiles of kTile vectors of one chunk (one page of one layer's K or V); blocks walk
// the tiles grid-stride, so one launch spans any number of pages and layers.
template <typename V, bool kGather>
__global__ void __launch_bounds__(kThreads) CopyKernel(const __grid_constant__ CopyArgs a) {
  const uint64_t vecs = a.chunk_bytes / sizeof(V);
  const uint64_t tiles_per_chunk = (vecs + kTile - 1) / kTile;
  const uint32_t chunks_per_item = a.layers * 2;
  const uint64_t total = uint64_t{a.items} * chunks_per_item * tiles_per_chunk;
  for (uint64_t t = blockIdx.x; t < total; t += gridDim.x) {
    const uint64_t unit = t / tiles_per_chunk;
    const uint64_t tile = t - unit * tiles_per_chunk;
    const uint32_t item = static_cast<uint32_t>(unit / chunks_per_item);
    const uint32_t lk = static_cast<uint32_t>(unit - uint64_t{item} * chunks_per_item);
    const uint64_t cache = a.layer_bases[lk >> 1] + (lk & 1) * a.kv_stride +
                           static_cast<uint64_t>(a.pages[item]) * a.page_stride;
    const uint64_t buffer = a.buffers[item] + a.buffer_offset + uint64_t{lk} * a.chunk_bytes;
    const V* src = reinterpret_cast<const V*>(kGather ? cache : buffer);
    V* dst = reinterpret_cast<V*>(kGather ? buffer : cache);
    const uint64_t first = tile * kTile + threadIdx.x;
    V r[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const uint64_t i = first + static_cast<uint64_t>(u) * kThreads;
      if (i < vecs) r[u] = Load(src + i);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const uint64_t i = first + static_cast<uint64_t>(u) * kThreads;
      if (i < vecs) Store(dst + i, r[u]);
    }
  }
}

template <bool kGather>
Status LaunchOne(const CopyArgs& args, uint32_t width, cudaStream_t stream) {
  int device = 0;
  int sms = 0;
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&device), "cudaGetDevice"));
  KVSTASH_RETURN_IF_ERROR(
      CudaStatus(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute"));
  const uint64_t vecs = args.chunk_bytes / width;
  const uint64_t tiles = uint64_t{args.items} * args.layers * 2 * ((vecs + kTile - 1) / kTile);
  const unsigned grid = static_cast<unsigned>(std::min<uint64_t>(tiles, uint64_t(sms) * (2048 / kThreads)));
  switch (width) {
    case 16: CopyKernel<uint4, kGather><<<grid, kThreads, 0, stream>>>(args); break;
    case 8: CopyKernel<uint2, kGather><<<grid, kThreads, 0, stream>>>(args); break;
    case 4: CopyKernel<unsigned int, kGather><<<grid, kThreads, 0, stream>>>(args); break;
    case 2: CopyKernel<unsigned short, kGather><<<grid, kThreads, 0, stream>>>(args); break;
    default: CopyKernel<unsigned char, kGather><<<grid, kThreads, 0, stream>>>(args); break;
  }
  return CudaStatus(cudaGetLastError(), kGather ? "launching the KV gather kernel" : "launching the KV scatter kernel");
}

template <bool kGather>
Status Copy(const KvLayout& layout, std::span<const int32_t> pages, std::span<const std::byte* const> buffers,
            const LayerRange& layers, cudaStream_t stream) {
  KVSTASH_RETURN_IF_ERROR(layout.Validate(pages, buffers, layers, /*writes_cache=*/!kGather));
  if (pages.empty()) return Status::Ok();
  const LayerRange r = layout.Clamp(layers);
  const uint32_t width = layout.AccessWidth(buffers);
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
      for (size_t i = 0; i < n; ++i) {
        args.pages[i] = pages[i0 + i];
        args.buffers[i] = reinterpret_cast<uint64_t>(buffers[i0 + i]);
      }
      KVSTASH_RETURN_IF_ERROR(LaunchOne<kGather>(args, width, stream));
    }
  }
  return Status::Ok();
}

}  // namespace

Status DeviceGather(const KvLayout& layout, std::span<const int32_t> pages, std::span<std::byte* const> block_buffers,
                    const LayerRange& layers, cudaStream_t stream) {
  const std::vector<const std::byte*> views(block_buffers.begin(), block_buffers.end());
  return Copy<true>(layout, pages, views, layers, stream);
}

Status DeviceScatter(const KvLayout& layout, std::span<const int32_t> pages,
                     std::span<const std::byte* const> block_buffers, const LayerRange& layers,
                     cudaStream_t stream) {
  return Copy<false>(layout, pages, block_buffers, layers, stream);
}

}  // namespace kvstash::gpu
