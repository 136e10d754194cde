#include <algorithm>
#include <string>
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

// The tile order of CopyKernel (see there), tiles of `tile_bytes`: where tile t's bytes come from and
// go to, and how many there are (a chunk's last tile may be shorter; all are multiples of 16 here).
struct BulkTile {
  uint64_t src;
  uint64_t dst;
  uint32_t bytes;
};

template <bool kGather>
__device__ __forceinline__ BulkTile LocateTile(const CopyArgs& a, uint64_t t, uint32_t tile_bytes,
                                               uint64_t tiles_per_chunk, uint64_t tiles_per_item) {
  const uint64_t group_tiles = uint64_t{a.group} * tiles_per_item;
  const uint64_t g = t / group_tiles;
  const uint32_t first_item = static_cast<uint32_t>(g) * a.group;
  const uint32_t n = min(a.group, a.items - first_item);
  const uint64_t w = t - g * group_tiles;
  const uint64_t per_chunk_index = uint64_t{n} * tiles_per_chunk;
  const uint32_t lk = static_cast<uint32_t>(w / per_chunk_index);
  const uint64_t r = w - uint64_t{lk} * per_chunk_index;
  const uint64_t in_group = r / tiles_per_chunk;
  const uint64_t tile = r - in_group * tiles_per_chunk;
  const uint32_t item = first_item + static_cast<uint32_t>(in_group);
  const uint64_t at = tile * tile_bytes;
  const uint64_t cache = a.layer_bases[lk >> 1] + (lk & 1) * a.kv_stride +
                         static_cast<uint64_t>(a.pages[item]) * a.page_stride + at;
  const uint64_t buffer = a.buffers[item] + a.buffer_offset + uint64_t{lk} * a.chunk_bytes + at;
  const uint32_t bytes = static_cast<uint32_t>(min(uint64_t{tile_bytes}, a.chunk_bytes - at));
  return kGather ? BulkTile{cache, buffer, bytes} : BulkTile{buffer, cache, bytes};
}

__device__ __forceinline__ uint32_t SharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ uint64_t GlobalAddress(uint64_t generic) {
  uint64_t g;
  asm("cvta.to.global.u64 %0, %1;" : "=l"(g) : "l"(generic));
  return g;
}

// Hopper bulk copies (KvCopyTuning::bulk_stages): one thread per CTA runs a ring of `stages`
// shared-memory buffers. Tile k is loaded into buffer k % stages by cp.async.bulk (the copy engine
// counts the bytes into that buffer's mbarrier), stored back out by a bulk store once the barrier's
// phase flips, and the buffer of tile k-1 is refilled with tile k-1+stages as soon as that tile's
// store has read it (wait_group.read 1), so stages-1 loads and up to two stores are in flight. Both
// sides of every buffer are the async proxy, so no proxy fence is needed between them. Requires 16-byte
// aligned addresses and sizes (the host checks AccessWidth == 16) and stages >= 2.
template <bool kGather>
__global__ void __launch_bounds__(32) BulkCopyKernel(const __grid_constant__ CopyArgs a, uint32_t tile_bytes,
                                                     uint32_t stages) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) unsigned char ring[];
  __shared__ __align__(8) uint64_t bars[kMaxBulkStages];
  if (threadIdx.x != 0) return;
  const uint64_t tiles_per_chunk = (a.chunk_bytes + tile_bytes - 1) / tile_bytes;
  const uint64_t tiles_per_item = uint64_t{a.layers} * 2 * tiles_per_chunk;
  const uint64_t total = uint64_t{a.items} * tiles_per_item;
  if (blockIdx.x >= total) return;
  const uint64_t mine = (total - blockIdx.x + gridDim.x - 1) / gridDim.x;  // tiles of this CTA
  for (uint32_t s = 0; s < stages; ++s) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(SharedAddress(&bars[s])) : "memory");
  }
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  const auto load = [&](uint64_t k) {
    const BulkTile t = LocateTile<kGather>(a, blockIdx.x + k * gridDim.x, tile_bytes, tiles_per_chunk, tiles_per_item);
    const uint32_t s = static_cast<uint32_t>(k % stages);
    const uint32_t bar = SharedAddress(&bars[s]);
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(t.bytes) : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                     SharedAddress(ring + size_t{s} * tile_bytes)),
                 "l"(GlobalAddress(t.src)), "r"(t.bytes), "r"(bar)
                 : "memory");
  };
  for (uint64_t k = 0; k < mine && k < stages; ++k) load(k);
  for (uint64_t k = 0; k < mine; ++k) {
    const uint32_t s = static_cast<uint32_t>(k % stages);
    const uint32_t parity = static_cast<uint32_t>((k / stages) & 1);
    const uint32_t bar = SharedAddress(&bars[s]);
    uint32_t done = 0;
    do {
      asm volatile(
          "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
          : "=r"(done)
          : "r"(bar), "r"(parity)
          : "memory");
    } while (done == 0);
    const BulkTile t = LocateTile<kGather>(a, blockIdx.x + k * gridDim.x, tile_bytes, tiles_per_chunk, tiles_per_item);
    asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(GlobalAddress(t.dst)),
                 "r"(SharedAddress(ring + size_t{s} * tile_bytes)), "r"(t.bytes)
                 : "memory");
    asm volatile("cp.async.bulk.commit_group;" ::: "memory");
    if (k >= 1 && k - 1 + stages < mine) {
      asm volatile("cp.async.bulk.wait_group.read 1;" ::: "memory");  // tile k-1's store has read its buffer
      load(k - 1 + stages);
    }
  }
  asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
#else
  __trap();  // the host launches this kernel only on sm_90 and newer
#endif
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

// The current device's SM count and compute capability, read once per device and thread (a
// launch's host time is part of what every caller waits for).
struct DeviceFacts {
  int sms = 0;
  int major = 0;
  bool bulk_smem_raised[2] = {false, false};  // [kGather]: the bulk kernel's shared-memory limit raised
};
constexpr int kMaxDevices = 64;

Result<DeviceFacts*> CurrentDevice() {
  thread_local DeviceFacts facts[kMaxDevices];
  int device = 0;
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&device), "cudaGetDevice"));
  if (device < 0 || device >= kMaxDevices) return InvalidArgument("device ordinal " + std::to_string(device));
  DeviceFacts& f = facts[device];
  if (f.sms == 0) {
    KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaDeviceGetAttribute(&f.major, cudaDevAttrComputeCapabilityMajor, device),
                                       "cudaDeviceGetAttribute"));
    KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaDeviceGetAttribute(&f.sms, cudaDevAttrMultiProcessorCount, device),
                                       "cudaDeviceGetAttribute"));
  }
  return &f;
}

template <bool kGather>
Status LaunchBulk(const CopyArgs& args, const KvCopyTuning& tuning, DeviceFacts& dev, cudaStream_t stream) {
  const uint64_t tiles_per_chunk = (args.chunk_bytes + tuning.bulk_tile_bytes - 1) / tuning.bulk_tile_bytes;
  const uint64_t tiles = uint64_t{args.items} * args.layers * 2 * tiles_per_chunk;
  const unsigned grid = static_cast<unsigned>(std::min<uint64_t>(tiles, uint64_t(dev.sms) * tuning.ctas_per_sm));
  const int smem = static_cast<int>(tuning.bulk_stages * tuning.bulk_tile_bytes);
  if (!dev.bulk_smem_raised[kGather]) {
    KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaFuncSetAttribute(BulkCopyKernel<kGather>,
                                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                            static_cast<int>(kMaxBulkSharedBytes)),
                                       "raising the bulk-copy kernel's shared-memory limit"));
    dev.bulk_smem_raised[kGather] = true;
  }
  BulkCopyKernel<kGather><<<grid, 32, smem, stream>>>(args, tuning.bulk_tile_bytes, tuning.bulk_stages);
  return CudaStatus(cudaGetLastError(), kGather ? "launching the KV bulk gather kernel"
                                                : "launching the KV bulk scatter kernel");
}

template <bool kGather>
Status LaunchOne(const CopyArgs& args, uint32_t width, const KvCopyTuning& tuning, cudaStream_t stream) {
  KVSTASH_ASSIGN_OR_RETURN(DeviceFacts * dev, CurrentDevice());
  if (tuning.bulk_stages != 0 && width == 16 && dev->major >= 9) return LaunchBulk<kGather>(args, tuning, *dev, stream);
  const int sms = dev->sms;
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
  if (tuning.bulk_stages != 0 &&
      (tuning.bulk_stages < 2 || tuning.bulk_stages > kMaxBulkStages || tuning.bulk_tile_bytes < 16 ||
       tuning.bulk_tile_bytes > 65536 || tuning.bulk_tile_bytes % 16 != 0 ||
       tuning.bulk_stages * tuning.bulk_tile_bytes > kMaxBulkSharedBytes)) {
    return InvalidArgument("KV copy tuning: bulk_stages 0 or 2.." + std::to_string(kMaxBulkStages) +
                           ", bulk_tile_bytes a multiple of 16 in 16..65536, stages x tile <= " +
                           std::to_string(kMaxBulkSharedBytes) + " bytes");
  }
  if (pages.empty()) return Status::Ok();
  const LayerRange r = layout.Clamp(layers);
  const uint32_t width = layout.AccessWidth(buffers);
  // Work order: by page index when asked (neighbouring items touch neighbouring cache addresses).
  std::vector<uint32_t> order;
  if (tuning.sort_pages) {
    order.resize(pages.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
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
        const size_t k = order.empty() ? i0 + i : order[i0 + i];
        args.pages[i] = pages[k];
        args.buffers[i] = reinterpret_cast<uint64_t>(buffers[k]);
      }
      KVSTASH_RETURN_IF_ERROR(LaunchOne<kGather>(args, width, tuning, stream));
    }
  }
  return Status::Ok();
}

}  // namespace

bool KvCopyUsesBulk(const KvLayout& layout, std::span<const std::byte* const> block_buffers,
                    const KvCopyTuning& tuning) {
  if (tuning.bulk_stages == 0 || layout.AccessWidth(block_buffers) != 16) return false;
  const Result<DeviceFacts*> dev = CurrentDevice();
  return dev.ok() && (*dev)->major >= 9;
}

KvCopyTuning DefaultKvCopyTuning(bool gather) {
  // H100 (docs/GPU.md, "Bulk copies"): bulk copies of 16 KiB tiles through 3 shared-memory stages
  // at 4 CTAs per SM (48 KiB each) beat the best load/store shape (128 threads x 8 loads, 6 CTAs per
  // SM, kept as the fallback for unaligned layouts and pre-Hopper devices) by about 1% for every
  // dtype, gather and scatter, on every page set measured (seeds 3, 5, 7, 11).
  (void)gather;
  return KvCopyTuning{.group_pages = 1, .sort_pages = false, .threads = 128, .ctas_per_sm = 4, .bulk_stages = 3,
                      .bulk_tile_bytes = 16384};
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
  // std::byte* and const std::byte* are similar types: reading one through the other is allowed.
  const std::span<const std::byte* const> views(reinterpret_cast<const std::byte* const*>(block_buffers.data()),
                                                block_buffers.size());
  return Copy<true>(layout, pages, views, layers, tuning, stream);
}

Status DeviceScatter(const KvLayout& layout, std::span<const int32_t> pages,
                     std::span<const std::byte* const> block_buffers, const LayerRange& layers,
                     const KvCopyTuning& tuning, cudaStream_t stream) {
  return Copy<false>(layout, pages, block_buffers, layers, tuning, stream);
}

}  // namespace kvstash::gpu
