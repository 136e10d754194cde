// gpu/: layout math and argument validation (everywhere), CPU gather/scatter against an independent
// element-index reference (everywhere), and the CUDA kernels and staging pipeline against the CPU
// reference on fresh random data with poisoned outputs (when built with CUDA and a device exists;
// skipped with the reason otherwise).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "gpu/gpu_data_path.h"
#include "gpu/kv_copy_host.h"
#include "gpu/kv_layout.h"
#ifdef KVSTASH_HAVE_CUDA
#include "gpu/cuda_util.h"
#include "gpu/kv_copy_device.h"
#include "gpu/staging_pipeline.h"
#endif

namespace kvstash::gpu {
namespace {

constexpr std::byte kPoison{0xA5};

std::vector<std::byte> RandomBytes(size_t n, std::mt19937_64& rng) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t r = rng();
    std::memcpy(v.data() + i, &r, std::min<size_t>(8, n - i));
  }
  return v;
}

// Byte offset of (layer, kv, page) chunk in the cache tensor(s), computed from the tensor shape
// written in kv_layout.h rather than from KvLayout's strides.
uint64_t ReferenceChunkOffset(KvLayoutKind kind, const KvCacheShape& s, uint32_t layer, uint32_t kv, uint32_t page) {
  const uint64_t c = s.chunk_bytes();
  switch (kind) {
    case KvLayoutKind::kVllmPerLayer: return (uint64_t{kv} * s.num_pages + page) * c;  // within layer's tensor
    case KvLayoutKind::kLayerMajor: return ((uint64_t{layer} * 2 + kv) * s.num_pages + page) * c;
    case KvLayoutKind::kPageMajor: return ((uint64_t{page} * s.num_layers + layer) * 2 + kv) * c;
  }
  return 0;
}

// The engine's cache as host memory: one tensor per layer or one for all.
struct HostCache {
  KvLayoutKind kind;
  KvCacheShape shape;
  std::vector<std::vector<std::byte>> tensors;

  std::byte* Chunk(uint32_t layer, uint32_t kv, uint32_t page) {
    auto& t = tensors[kind == KvLayoutKind::kVllmPerLayer ? layer : 0];
    return t.data() + ReferenceChunkOffset(kind, shape, layer, kv, page);
  }
  std::vector<void*> Bases() {
    std::vector<void*> b;
    for (auto& t : tensors) b.push_back(t.data());
    return b;
  }
};

HostCache MakeHostCache(KvLayoutKind kind, const KvCacheShape& s, std::mt19937_64& rng) {
  HostCache c{kind, s, {}};
  const uint64_t per_layer = 2 * s.chunk_bytes() * s.num_pages;
  if (kind == KvLayoutKind::kVllmPerLayer) {
    for (uint32_t l = 0; l < s.num_layers; ++l) c.tensors.push_back(RandomBytes(per_layer, rng));
  } else {
    c.tensors.push_back(RandomBytes(per_layer * s.num_layers, rng));
  }
  return c;
}

// Expected block buffers of a gather, element by element (byte by byte) from the reference offsets.
std::vector<std::byte> ReferenceGather(HostCache& cache, const std::vector<int32_t>& pages, LayerRange r,
                                       std::byte fill) {
  const auto& s = cache.shape;
  const uint64_t c = s.chunk_bytes();
  std::vector<std::byte> out(pages.size() * s.block_bytes(), fill);
  for (size_t i = 0; i < pages.size(); ++i) {
    for (uint32_t l = r.first; l < r.last; ++l) {
      for (uint32_t kv = 0; kv < 2; ++kv) {
        const std::byte* src = cache.Chunk(l, kv, static_cast<uint32_t>(pages[i]));
        std::byte* dst = out.data() + i * s.block_bytes() + (uint64_t{l} * 2 + kv) * c;
        for (uint64_t b = 0; b < c; ++b) dst[b] = src[b];
      }
    }
  }
  return out;
}

struct Case {
  KvLayoutKind kind;
  KvCacheShape shape;
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (auto kind : {KvLayoutKind::kVllmPerLayer, KvLayoutKind::kLayerMajor, KvLayoutKind::kPageMajor}) {
    for (uint32_t dtype : {1u, 2u, 4u}) {
      cases.push_back({kind, {.num_layers = 3, .num_pages = 37, .page_tokens = 16, .num_kv_heads = 2,
                              .head_dim = 64, .dtype_bytes = dtype}});
      // Odd sizes: chunks that are not a multiple of 16 bytes force narrower accesses.
      cases.push_back({kind, {.num_layers = 2, .num_pages = 11, .page_tokens = 5, .num_kv_heads = 3,
                              .head_dim = 7, .dtype_bytes = dtype}});
    }
  }
  return cases;
}

std::vector<int32_t> RandomPages(uint32_t num_pages, size_t n, std::mt19937_64& rng) {
  std::vector<int32_t> all(num_pages);
  for (uint32_t i = 0; i < num_pages; ++i) all[i] = static_cast<int32_t>(i);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(std::min<size_t>(n, num_pages));
  return all;
}

TEST(KvLayoutTest, ShapeArithmetic) {
  KvCacheShape s{.num_layers = 32, .num_pages = 1000, .page_tokens = 16, .num_kv_heads = 8, .head_dim = 128,
                 .dtype_bytes = 2};
  EXPECT_EQ(s.chunk_bytes(), 16u * 8 * 128 * 2);
  EXPECT_EQ(s.block_bytes(), 32u * 2 * 16 * 8 * 128 * 2);
  std::vector<std::byte> t(64);
  auto lm = KvLayout::LayerMajor(s, t.data());
  ASSERT_TRUE(lm.ok());
  EXPECT_EQ(lm->kv_stride(), s.chunk_bytes() * 1000);
  EXPECT_EQ(lm->page_stride(), s.chunk_bytes());
  EXPECT_EQ(lm->TensorBytes(), s.block_bytes() * 1000);
  auto pm = KvLayout::PageMajor(s, t.data());
  ASSERT_TRUE(pm.ok());
  EXPECT_EQ(pm->page_stride(), s.block_bytes());
  EXPECT_EQ(pm->kv_stride(), s.chunk_bytes());
  EXPECT_EQ(lm->LayerSliceBytes({4, 6}), 2 * 2 * s.chunk_bytes());
  EXPECT_EQ(lm->LayerSliceOffset({4, 6}), 4 * 2 * s.chunk_bytes());
  EXPECT_EQ(lm->LayerSliceBytes({}), s.block_bytes());
}

TEST(KvLayoutTest, RejectsBadShapes) {
  std::vector<std::byte> t(64);
  KvCacheShape good{.num_layers = 2, .num_pages = 4, .page_tokens = 16, .num_kv_heads = 2, .head_dim = 8,
                    .dtype_bytes = 2};
  for (uint32_t dtype : {0u, 3u, 8u}) {
    KvCacheShape s = good;
    s.dtype_bytes = dtype;
    EXPECT_EQ(KvLayout::LayerMajor(s, t.data()).status().code(), StatusCode::kInvalidArgument) << dtype;
  }
  KvCacheShape zero = good;
  zero.head_dim = 0;
  EXPECT_EQ(KvLayout::PageMajor(zero, t.data()).status().code(), StatusCode::kInvalidArgument);
  KvCacheShape huge = good;
  huge.num_layers = huge.num_pages = huge.page_tokens = huge.num_kv_heads = huge.head_dim = 0xFFFFFFFF;
  EXPECT_EQ(KvLayout::LayerMajor(huge, t.data()).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(KvLayout::LayerMajor(good, nullptr).status().code(), StatusCode::kInvalidArgument);
  std::vector<void*> one = {t.data()};
  EXPECT_EQ(KvLayout::VllmPerLayer(good, one).status().code(), StatusCode::kInvalidArgument);
  std::vector<void*> same = {t.data(), t.data()};
  EXPECT_EQ(KvLayout::VllmPerLayer(good, same).status().code(), StatusCode::kInvalidArgument);
  std::vector<void*> null = {t.data(), nullptr};
  EXPECT_EQ(KvLayout::VllmPerLayer(good, null).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(KvLayout::Make(KvLayoutKind::kLayerMajor, good, same).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseKvLayoutKind("page-major").value(), KvLayoutKind::kPageMajor);
  EXPECT_FALSE(ParseKvLayoutKind("paged").ok());
}

TEST(KvLayoutTest, ValidatesCopyArguments) {
  KvCacheShape s{.num_layers = 2, .num_pages = 4, .page_tokens = 16, .num_kv_heads = 2, .head_dim = 8,
                 .dtype_bytes = 2};
  std::vector<std::byte> t(s.block_bytes() * 4), buf(s.block_bytes() * 2);
  auto layout = KvLayout::LayerMajor(s, t.data()).value();
  const std::byte* b0 = buf.data();
  const std::byte* b1 = buf.data() + s.block_bytes();
  std::vector<const std::byte*> two = {b0, b1};
  EXPECT_TRUE(layout.Validate(std::vector<int32_t>{0, 3}, two, {}, true).ok());
  EXPECT_FALSE(layout.Validate(std::vector<int32_t>{0}, two, {}, false).ok());         // count mismatch
  EXPECT_FALSE(layout.Validate(std::vector<int32_t>{0, 4}, two, {}, false).ok());      // page out of range
  EXPECT_FALSE(layout.Validate(std::vector<int32_t>{-1, 0}, two, {}, false).ok());     // negative page
  EXPECT_FALSE(layout.Validate(std::vector<int32_t>{1, 1}, two, {}, true).ok());       // scatter twice
  EXPECT_TRUE(layout.Validate(std::vector<int32_t>{1, 1}, two, {}, false).ok());       // gather twice is fine
  EXPECT_FALSE(layout.Validate(std::vector<int32_t>{0, 1}, two, {2, 2}, false).ok());  // empty range
  EXPECT_FALSE(layout.Validate(std::vector<int32_t>{0, 1}, two, {3, 9}, false).ok());  // past the end
  std::vector<const std::byte*> with_null = {b0, nullptr};
  EXPECT_FALSE(layout.Validate(std::vector<int32_t>{0, 1}, with_null, {}, false).ok());
}

// The duplicate-page check on scatters: a bitmap for ordinary caches, a sorted copy for caches of
// more than 2^24 pages; both name the second listing.
TEST(KvLayoutTest, ScatterRejectsADuplicatePageInSmallAndHugeCaches) {
  for (uint32_t num_pages : {uint32_t{1000}, (uint32_t{1} << 24) + 7}) {
    KvCacheShape s{.num_layers = 1, .num_pages = num_pages, .page_tokens = 1, .num_kv_heads = 1, .head_dim = 8,
                   .dtype_bytes = 2};
    // Validate reads only addresses: the cache is never touched, so a fake base is enough.
    auto layout = KvLayout::LayerMajor(s, reinterpret_cast<void*>(uintptr_t{1} << 40)).value();
    std::vector<std::byte> buf(s.block_bytes());
    const int32_t last = static_cast<int32_t>(num_pages - 1);
    std::vector<int32_t> pages = {5, last, 0, 63, 64, last - 1};
    std::vector<const std::byte*> buffers(pages.size() + 1, buf.data());
    EXPECT_TRUE(layout.Validate(pages, std::span(buffers.data(), pages.size()), {}, true).ok()) << num_pages;
    pages.push_back(63);
    Status st = layout.Validate(pages, buffers, {}, true);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << num_pages;
    EXPECT_NE(st.message().find("page 63 is listed twice (item 6)"), std::string::npos) << st.ToString();
    EXPECT_TRUE(layout.Validate(pages, buffers, {}, false).ok()) << "gathers may read a page twice";
  }
}

TEST(KvLayoutTest, AccessWidthFollowsAlignment) {
  alignas(16) static std::byte t[1 << 16];
  KvCacheShape s{.num_layers = 2, .num_pages = 4, .page_tokens = 16, .num_kv_heads = 2, .head_dim = 8,
                 .dtype_bytes = 2};
  auto layout = KvLayout::LayerMajor(s, t).value();
  std::vector<const std::byte*> aligned = {t + 4096};
  EXPECT_EQ(layout.AccessWidth(aligned), 16u);
  std::vector<const std::byte*> off4 = {t + 4100};
  EXPECT_EQ(layout.AccessWidth(off4), 4u);
  KvCacheShape odd = s;
  odd.head_dim = 7;
  odd.dtype_bytes = 1;
  odd.page_tokens = 5;
  odd.num_kv_heads = 3;
  EXPECT_EQ(KvLayout::LayerMajor(odd, t).value().AccessWidth(aligned), 1u);
}

TEST(KvCopyHostTest, GatherScatterMatchReferenceForEveryLayoutAndDtype) {
  std::mt19937_64 rng(std::random_device{}());
  for (const Case& c : Cases()) {
    SCOPED_TRACE(std::string(ToString(c.kind)) + " dtype " + std::to_string(c.shape.dtype_bytes));
    HostCache cache = MakeHostCache(c.kind, c.shape, rng);
    auto layout = KvLayout::Make(c.kind, c.shape, cache.Bases()).value();
    const auto pages = RandomPages(c.shape.num_pages, 9, rng);
    for (LayerRange r : {LayerRange{}, LayerRange{1, 2}}) {
      std::vector<std::byte> out(pages.size() * c.shape.block_bytes(), kPoison);
      std::vector<std::byte*> bufs;
      for (size_t i = 0; i < pages.size(); ++i) bufs.push_back(out.data() + i * c.shape.block_bytes());
      ASSERT_TRUE(HostGather(layout, pages, bufs, r).ok());
      ASSERT_EQ(out, ReferenceGather(cache, pages, layout.Clamp(r), kPoison));
    }
    // Scatter fresh blocks into a poisoned cache; gathering them back must return them, and every
    // page not scattered must still be poison.
    HostCache target = cache;
    for (auto& t : target.tensors) std::fill(t.begin(), t.end(), kPoison);
    auto target_layout = KvLayout::Make(c.kind, c.shape, target.Bases()).value();
    auto blocks = RandomBytes(pages.size() * c.shape.block_bytes(), rng);
    std::vector<const std::byte*> in;
    for (size_t i = 0; i < pages.size(); ++i) in.push_back(blocks.data() + i * c.shape.block_bytes());
    ASSERT_TRUE(HostScatter(target_layout, pages, in).ok());
    ASSERT_EQ(ReferenceGather(target, pages, {0, c.shape.num_layers}, kPoison), blocks);
    std::vector<int32_t> rest;
    for (uint32_t p = 0; p < c.shape.num_pages; ++p) {
      if (std::find(pages.begin(), pages.end(), static_cast<int32_t>(p)) == pages.end()) rest.push_back(int32_t(p));
    }
    const auto untouched = ReferenceGather(target, rest, {0, c.shape.num_layers}, kPoison);
    ASSERT_TRUE(std::all_of(untouched.begin(), untouched.end(), [](std::byte b) { return b == kPoison; }));
  }
}

// The probe against an oracle of its own: `ucx_info -d` (ucx-utils, the same UCX and modules) lists a
// cuda_copy or cuda_ipc transport exactly when this UCX can move device memory. Debian's UCX 1.13
// has none ("staged"); the UCX of deploy/build-ucx-cuda.sh on a host with the driver has both.
TEST(GpuDataPathTest, ReportsThePathUcxInfoImplies) {
  const GpuDataPathReport report = ProbeGpuDataPath();
  std::printf("GPU data path: %s (%s)\n", std::string(ToString(report.path)).c_str(), report.reason.c_str());
  EXPECT_NE(report.reason.find("UCX " + transfer::UcxContext::Version()), std::string::npos) << report.reason;
  FILE* pipe = popen("ucx_info -d 2>/dev/null", "r");
  if (pipe == nullptr) GTEST_SKIP() << "cannot run ucx_info";
  std::string listing;
  char chunk[4096];
  for (size_t n; (n = fread(chunk, 1, sizeof chunk, pipe)) > 0;) listing.append(chunk, n);
  if (pclose(pipe) != 0 || listing.find("Transport:") == std::string::npos) {
    GTEST_SKIP() << "ucx_info -d gave no transport listing (ucx-utils not installed?)";
  }
  const bool cuda_transport = listing.find("Transport: cuda_copy") != std::string::npos ||
                              listing.find("Transport: cuda_ipc") != std::string::npos;
  EXPECT_EQ(report.path, cuda_transport ? GpuDataPath::kDirect : GpuDataPath::kStaged) << report.reason;
  if (!cuda_transport) {
    EXPECT_NE(report.reason.find("no CUDA memory transport"), std::string::npos) << report.reason;
  }
}

#ifdef KVSTASH_HAVE_CUDA

#define SKIP_WITHOUT_DEVICE()                                                                  \
  do {                                                                                         \
    const DeviceSummary devices = ProbeDevices();                                              \
    if (devices.count == 0) GTEST_SKIP() << "no CUDA device on this host: " << devices.reason; \
  } while (0)

#define CUDA_OK(expr) ASSERT_TRUE(CudaStatus((expr), #expr).ok()) << CudaStatus((expr), #expr).ToString()

// The host cache mirrored in device memory.
struct DeviceCache {
  std::vector<DeviceBuffer> tensors;
  std::vector<void*> Bases() {
    std::vector<void*> b;
    for (auto& t : tensors) b.push_back(t.data());
    return b;
  }
};

DeviceCache Upload(const HostCache& host) {
  DeviceCache d;
  for (const auto& t : host.tensors) {
    d.tensors.push_back(DeviceBuffer::Allocate(t.size()).value());
    EXPECT_EQ(cudaMemcpy(d.tensors.back().data(), t.data(), t.size(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  return d;
}

// The device cases run under the default tuning and under the bulk-copy kernel (sm_90; aligned
// cases only, the others fall back), whichever of the two is the default.
std::vector<std::pair<std::string, KvCopyTuning>> DeviceTunings(bool gather) {
  return {{"default", DefaultKvCopyTuning(gather)},
          {"bulk", {.threads = 128, .ctas_per_sm = 3, .bulk_stages = 4, .bulk_tile_bytes = 1024}},
          {"load/store", {.threads = 128, .ctas_per_sm = 6}}};
}

TEST(KvCopyDeviceTest, GatherMatchesReferenceForEveryLayoutAndDtype) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937_64 rng(std::random_device{}());
  auto stream = Stream::Create().value();
  for (const auto& [tuning_name, tuning] : DeviceTunings(true))
  for (const Case& c : Cases()) {
    SCOPED_TRACE(tuning_name + " " + std::string(ToString(c.kind)) + " dtype " + std::to_string(c.shape.dtype_bytes));
    HostCache host = MakeHostCache(c.kind, c.shape, rng);
    DeviceCache dev = Upload(host);
    auto layout = KvLayout::Make(c.kind, c.shape, dev.Bases()).value();
    const auto pages = RandomPages(c.shape.num_pages, 13, rng);
    for (LayerRange r : {LayerRange{}, LayerRange{1, 2}}) {
      const size_t bytes = pages.size() * c.shape.block_bytes();
      auto out = DeviceBuffer::Allocate(bytes).value();
      CUDA_OK(cudaMemsetAsync(out.data(), int(kPoison), bytes, stream.get()));
      std::vector<std::byte*> bufs;
      for (size_t i = 0; i < pages.size(); ++i) bufs.push_back(out.data() + i * c.shape.block_bytes());
      ASSERT_TRUE(DeviceGather(layout, pages, bufs, r, tuning, stream.get()).ok());
      std::vector<std::byte> got(bytes);
      CUDA_OK(cudaMemcpyAsync(got.data(), out.data(), bytes, cudaMemcpyDeviceToHost, stream.get()));
      CUDA_OK(cudaStreamSynchronize(stream.get()));
      ASSERT_EQ(got, ReferenceGather(host, pages, layout.Clamp(r), kPoison));
    }
  }
}

TEST(KvCopyDeviceTest, ScatterMatchesReferenceForEveryLayoutAndDtype) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937_64 rng(std::random_device{}());
  auto stream = Stream::Create().value();
  for (const auto& [tuning_name, tuning] : DeviceTunings(false))
  for (const Case& c : Cases()) {
    SCOPED_TRACE(tuning_name + " " + std::string(ToString(c.kind)) + " dtype " + std::to_string(c.shape.dtype_bytes));
    HostCache host = MakeHostCache(c.kind, c.shape, rng);
    for (auto& t : host.tensors) std::fill(t.begin(), t.end(), kPoison);
    DeviceCache dev = Upload(host);
    auto layout = KvLayout::Make(c.kind, c.shape, dev.Bases()).value();
    auto host_layout = KvLayout::Make(c.kind, c.shape, host.Bases()).value();
    const auto pages = RandomPages(c.shape.num_pages, 13, rng);
    const size_t bytes = pages.size() * c.shape.block_bytes();
    auto blocks = RandomBytes(bytes, rng);
    auto in = DeviceBuffer::Allocate(bytes).value();
    CUDA_OK(cudaMemcpy(in.data(), blocks.data(), bytes, cudaMemcpyHostToDevice));
    std::vector<const std::byte*> dbufs, hbufs;
    for (size_t i = 0; i < pages.size(); ++i) {
      dbufs.push_back(in.data() + i * c.shape.block_bytes());
      hbufs.push_back(blocks.data() + i * c.shape.block_bytes());
    }
    ASSERT_TRUE(DeviceScatter(layout, pages, dbufs, {}, tuning, stream.get()).ok());
    ASSERT_TRUE(HostScatter(host_layout, pages, hbufs).ok());
    CUDA_OK(cudaStreamSynchronize(stream.get()));
    for (size_t t = 0; t < host.tensors.size(); ++t) {
      std::vector<std::byte> got(host.tensors[t].size());
      CUDA_OK(cudaMemcpy(got.data(), dev.tensors[t].data(), got.size(), cudaMemcpyDeviceToHost));
      ASSERT_EQ(got, host.tensors[t]) << "tensor " << t;  // scattered pages new, the rest still poison
    }
  }
}

TEST(KvCopyDeviceTest, ManyPagesSplitAcrossLaunchesAndPinnedHostBuffers) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937_64 rng(std::random_device{}());
  KvCacheShape s{.num_layers = 4, .num_pages = 1500, .page_tokens = 16, .num_kv_heads = 2, .head_dim = 32,
                 .dtype_bytes = 2};
  HostCache host = MakeHostCache(KvLayoutKind::kVllmPerLayer, s, rng);
  DeviceCache dev = Upload(host);
  auto layout = KvLayout::Make(KvLayoutKind::kVllmPerLayer, s, dev.Bases()).value();
  const auto pages = RandomPages(s.num_pages, 1200, rng);  // > kMaxItemsPerLaunch
  auto pinned = PinnedBuffer::Allocate(pages.size() * s.block_bytes()).value();
  std::memset(pinned.data(), int(kPoison), pinned.size());
  std::vector<std::byte*> bufs;
  for (size_t i = 0; i < pages.size(); ++i) bufs.push_back(pinned.data() + i * s.block_bytes());
  auto stream = Stream::Create().value();
  ASSERT_TRUE(DeviceGather(layout, pages, bufs, {}, stream.get()).ok());
  CUDA_OK(cudaStreamSynchronize(stream.get()));
  const auto expected = ReferenceGather(host, pages, {0, s.num_layers}, kPoison);
  ASSERT_EQ(0, std::memcmp(pinned.data(), expected.data(), expected.size()));
}

// Bulk copies reach pinned host memory through unified addressing too: gather into and scatter out
// of pinned block buffers, byte for byte against the CPU reference.
TEST(KvCopyDeviceTest, BulkCopiesWithPinnedHostBuffers) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937_64 rng(std::random_device{}());
  KvCacheShape s{.num_layers = 3, .num_pages = 300, .page_tokens = 16, .num_kv_heads = 4, .head_dim = 64,
                 .dtype_bytes = 2};
  HostCache host = MakeHostCache(KvLayoutKind::kVllmPerLayer, s, rng);
  DeviceCache dev = Upload(host);
  auto layout = KvLayout::Make(KvLayoutKind::kVllmPerLayer, s, dev.Bases()).value();
  const auto pages = RandomPages(s.num_pages, 100, rng);
  auto pinned = PinnedBuffer::Allocate(pages.size() * s.block_bytes()).value();
  std::memset(pinned.data(), int(kPoison), pinned.size());
  std::vector<std::byte*> bufs;
  for (size_t i = 0; i < pages.size(); ++i) bufs.push_back(pinned.data() + i * s.block_bytes());
  const std::vector<const std::byte*> cbufs(bufs.begin(), bufs.end());
  const KvCopyTuning bulk{.ctas_per_sm = 2, .bulk_stages = 3, .bulk_tile_bytes = 4096};
  auto stream = Stream::Create().value();
  ASSERT_TRUE(DeviceGather(layout, pages, bufs, {}, bulk, stream.get()).ok());
  CUDA_OK(cudaStreamSynchronize(stream.get()));
  const auto expected = ReferenceGather(host, pages, {0, s.num_layers}, kPoison);
  ASSERT_EQ(0, std::memcmp(pinned.data(), expected.data(), expected.size()));
  // Scatter fresh bytes from the pinned buffers into a poisoned cache.
  const auto blocks = RandomBytes(pinned.size(), rng);
  std::memcpy(pinned.data(), blocks.data(), blocks.size());
  for (auto& t : host.tensors) std::fill(t.begin(), t.end(), kPoison);
  for (size_t k = 0; k < dev.tensors.size(); ++k) {
    CUDA_OK(cudaMemsetAsync(dev.tensors[k].data(), int(kPoison), dev.tensors[k].size(), stream.get()));
  }
  ASSERT_TRUE(DeviceScatter(layout, pages, cbufs, {}, bulk, stream.get()).ok());
  auto host_layout = KvLayout::Make(KvLayoutKind::kVllmPerLayer, s, host.Bases()).value();
  std::vector<const std::byte*> hbufs;
  for (size_t i = 0; i < pages.size(); ++i) hbufs.push_back(blocks.data() + i * s.block_bytes());
  ASSERT_TRUE(HostScatter(host_layout, pages, hbufs).ok());
  CUDA_OK(cudaStreamSynchronize(stream.get()));
  for (size_t k = 0; k < dev.tensors.size(); ++k) {
    std::vector<std::byte> got(dev.tensors[k].size());
    CUDA_OK(cudaMemcpy(got.data(), dev.tensors[k].data(), got.size(), cudaMemcpyDeviceToHost));
    ASSERT_TRUE(got == host.tensors[k]) << "tensor " << k;
  }
}

// Every tuning gpu_bench compares must move the same bytes: gather and scatter under each, with
// more pages than one launch takes (sorting spans the split), a layer range, and odd sizes.
TEST(KvCopyDeviceTest, EveryTuningMatchesTheReference) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937_64 rng(std::random_device{}());
  auto stream = Stream::Create().value();
  std::vector<KvCopyTuning> tunings = {DefaultKvCopyTuning(true), DefaultKvCopyTuning(false)};
  for (uint32_t group : {1u, 3u, 64u, 512u}) {
    for (bool sort : {false, true}) {
      for (uint32_t threads : {256u, 128u, 64u}) {
        tunings.push_back({.group_pages = group, .sort_pages = sort, .threads = threads,
                           .ctas_per_sm = 2048 / threads});
      }
    }
  }
  tunings.push_back({.group_pages = 7, .sort_pages = true, .threads = 256, .ctas_per_sm = 1});
  // Bulk copies (sm_90): a tile larger than the chunk, a chunk cut into 768 + 768 + 512 bytes, many
  // small tiles through a deep ring, grouped and sorted pages, one CTA per SM. On the odd-sized shape
  // these fall back to the load/store kernel.
  const size_t first_bulk = tunings.size();
  tunings.push_back({.threads = 128, .ctas_per_sm = 4, .bulk_stages = 2, .bulk_tile_bytes = 16384});
  tunings.push_back({.threads = 128, .ctas_per_sm = 2, .bulk_stages = 3, .bulk_tile_bytes = 768});
  tunings.push_back({.group_pages = 64, .sort_pages = true, .threads = 64, .ctas_per_sm = 1, .bulk_stages = 16,
                     .bulk_tile_bytes = 512});
  tunings.push_back({.threads = 256, .ctas_per_sm = 16, .bulk_stages = 4, .bulk_tile_bytes = 16});
  const std::vector<std::pair<KvLayoutKind, KvCacheShape>> shapes = {
      {KvLayoutKind::kVllmPerLayer, {.num_layers = 3, .num_pages = 700, .page_tokens = 16, .num_kv_heads = 2,
                                     .head_dim = 64, .dtype_bytes = 1}},
      {KvLayoutKind::kPageMajor, {.num_layers = 2, .num_pages = 23, .page_tokens = 5, .num_kv_heads = 3,
                                  .head_dim = 7, .dtype_bytes = 2}},
  };
  for (const auto& [kind, shape] : shapes) {
    HostCache host = MakeHostCache(kind, shape, rng);
    DeviceCache dev = Upload(host);
    auto layout = KvLayout::Make(kind, shape, dev.Bases()).value();
    const auto pages = RandomPages(shape.num_pages, 600, rng);
    const size_t bytes = pages.size() * shape.block_bytes();
    auto out = DeviceBuffer::Allocate(bytes).value();
    std::vector<std::byte*> bufs;
    std::vector<const std::byte*> cbufs;
    for (size_t i = 0; i < pages.size(); ++i) {
      bufs.push_back(out.data() + i * shape.block_bytes());
      cbufs.push_back(bufs.back());
    }
    for (size_t ti = 0; ti < tunings.size(); ++ti) {
      const KvCopyTuning& t = tunings[ti];
      SCOPED_TRACE(std::string(ToString(kind)) + " tuning " + std::to_string(ti) + ": group " +
                   std::to_string(t.group_pages) + " sort " + std::to_string(t.sort_pages) + " threads " +
                   std::to_string(t.threads) + " ctas/SM " + std::to_string(t.ctas_per_sm));
      const LayerRange r = ti % 2 == 0 ? LayerRange{} : LayerRange{1, 2};
      if (ti >= first_bulk) {
        int major = 0;
        CUDA_OK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
        EXPECT_EQ(KvCopyUsesBulk(layout, cbufs, t), major >= 9 && layout.AccessWidth(cbufs) == 16);
      }
      CUDA_OK(cudaMemsetAsync(out.data(), int(kPoison), bytes, stream.get()));
      ASSERT_TRUE(DeviceGather(layout, pages, bufs, r, t, stream.get()).ok());
      std::vector<std::byte> got(bytes);
      CUDA_OK(cudaMemcpyAsync(got.data(), out.data(), bytes, cudaMemcpyDeviceToHost, stream.get()));
      CUDA_OK(cudaStreamSynchronize(stream.get()));
      ASSERT_TRUE(got == ReferenceGather(host, pages, layout.Clamp(r), kPoison)) << "gather differs";
      // Scatter fresh blocks into a poisoned copy of the cache; compare with the CPU scatter.
      HostCache want = host;
      for (auto& tensor : want.tensors) std::fill(tensor.begin(), tensor.end(), kPoison);
      for (size_t k = 0; k < dev.tensors.size(); ++k) {
        CUDA_OK(cudaMemsetAsync(dev.tensors[k].data(), int(kPoison), dev.tensors[k].size(), stream.get()));
      }
      const auto blocks = RandomBytes(bytes, rng);
      CUDA_OK(cudaMemcpyAsync(out.data(), blocks.data(), bytes, cudaMemcpyHostToDevice, stream.get()));
      ASSERT_TRUE(DeviceScatter(layout, pages, cbufs, r, t, stream.get()).ok());
      std::vector<const std::byte*> hbufs;
      for (size_t i = 0; i < pages.size(); ++i) hbufs.push_back(blocks.data() + i * shape.block_bytes());
      auto want_layout = KvLayout::Make(kind, shape, want.Bases()).value();
      ASSERT_TRUE(HostScatter(want_layout, pages, hbufs, r).ok());
      CUDA_OK(cudaStreamSynchronize(stream.get()));
      for (size_t k = 0; k < dev.tensors.size(); ++k) {
        std::vector<std::byte> cache(dev.tensors[k].size());
        CUDA_OK(cudaMemcpy(cache.data(), dev.tensors[k].data(), cache.size(), cudaMemcpyDeviceToHost));
        ASSERT_TRUE(cache == want.tensors[k]) << "scatter differs in tensor " << k;
      }
      // Restore the cache the gather reads.
      for (size_t k = 0; k < dev.tensors.size(); ++k) {
        CUDA_OK(cudaMemcpy(dev.tensors[k].data(), host.tensors[k].data(), host.tensors[k].size(),
                           cudaMemcpyHostToDevice));
      }
    }
    for (KvCopyTuning bad :
         {KvCopyTuning{.group_pages = 0}, KvCopyTuning{.threads = 32}, KvCopyTuning{.ctas_per_sm = 0},
          KvCopyTuning{.bulk_stages = 1}, KvCopyTuning{.bulk_stages = kMaxBulkStages + 1},
          KvCopyTuning{.bulk_stages = 2, .bulk_tile_bytes = 24}, KvCopyTuning{.bulk_stages = 2, .bulk_tile_bytes = 0},
          KvCopyTuning{.bulk_stages = 4, .bulk_tile_bytes = 65536}}) {
      EXPECT_EQ(DeviceScatter(layout, pages, cbufs, {}, bad, stream.get()).code(), StatusCode::kInvalidArgument);
    }
  }
}

TEST(KvCopyDeviceTest, RejectsBadArgumentsBeforeLaunching) {
  SKIP_WITHOUT_DEVICE();
  KvCacheShape s{.num_layers = 2, .num_pages = 4, .page_tokens = 16, .num_kv_heads = 2, .head_dim = 8,
                 .dtype_bytes = 2};
  auto cache = DeviceBuffer::Allocate(s.block_bytes() * 4).value();
  auto layout = KvLayout::LayerMajor(s, cache.data()).value();
  auto buf = DeviceBuffer::Allocate(s.block_bytes()).value();
  std::vector<std::byte*> bufs = {buf.data()};
  EXPECT_EQ(DeviceGather(layout, std::vector<int32_t>{4}, bufs, {}, nullptr).code(), StatusCode::kInvalidArgument);
  std::vector<const std::byte*> two = {buf.data(), buf.data()};
  EXPECT_EQ(DeviceScatter(layout, std::vector<int32_t>{1, 1}, two, {}, nullptr).code(),
            StatusCode::kInvalidArgument);
}

TEST(StagingPipelineTest, UploadThenDownloadRoundTripsInOrder) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937_64 rng(std::random_device{}());
  const size_t bytes = (5ULL << 20) + 12345;  // not a multiple of the slot size
  auto data = RandomBytes(bytes, rng);
  auto dev = DeviceBuffer::Allocate(bytes).value();
  CUDA_OK(cudaMemset(dev.data(), int(kPoison), bytes));
  CUDA_OK(cudaDeviceSynchronize());  // the pipeline's streams do not wait for the legacy default stream
  auto pipe = StagingPipeline::Create({.slot_bytes = 1ULL << 20, .slots = 3}).value();
  ASSERT_TRUE(pipe->Upload(dev.data(), bytes, [&](size_t off, std::span<std::byte> slot) {
                    std::memcpy(slot.data(), data.data() + off, slot.size());
                    return Status::Ok();
                  }).ok());
  std::vector<std::byte> back(bytes, kPoison);
  size_t expected_offset = 0;
  ASSERT_TRUE(pipe->Download(dev.data(), bytes, [&](size_t off, std::span<const std::byte> chunk) {
                    EXPECT_EQ(off, expected_offset);
                    expected_offset += chunk.size();
                    std::memcpy(back.data() + off, chunk.data(), chunk.size());
                    return Status::Ok();
                  }).ok());
  EXPECT_EQ(expected_offset, bytes);
  ASSERT_EQ(back, data);
  // A consumer's error stops the transfer and comes back.
  const Status st = pipe->Download(dev.data(), bytes, [](size_t off, std::span<const std::byte>) {
    return off > 0 ? Aborted("consumer gave up") : Status::Ok();
  });
  EXPECT_EQ(st.code(), StatusCode::kAborted);
}

#endif  // KVSTASH_HAVE_CUDA

}  // namespace
}  // namespace kvstash::gpu
