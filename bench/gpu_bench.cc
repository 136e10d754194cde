// gpu_bench: paged-KV gather/scatter and pinned staging on one GPU, each beside the ceiling measured
// in the same run:
//   gather / scatter GB/s        vs  cudaMemcpyAsync device-to-device of the same bytes
//   staged D2H / H2D GB/s        vs  one plain cudaMemcpyAsync to/from pinned host memory
// Method: random data (never zeros) several times the L2, warm-up, median of many timed runs
// (CUDA events for device work, the host clock for the staging pipeline, which syncs on the host).
//
//   gpu_bench [--pages N] [--reps N] [--staging-mib N] [--only SECTION] [--seed N] [--variants A,B] [--dtypes 1,2,4]
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gpu/block_codec.h"
#include "gpu/block_codec_device.h"
#include "gpu/cuda_util.h"
#include "gpu/device_fill.h"
#include "gpu/gpu_data_path.h"
#include "gpu/kv_copy_device.h"
#include "gpu/kv_sample.h"
#include "gpu/staging_pipeline.h"

using namespace kvstash;
using namespace kvstash::gpu;

namespace {

void Check(const Status& st, const char* what) {
  if (!st.ok()) {
    std::fprintf(stderr, "gpu_bench: %s: %s\n", what, st.ToString().c_str());
    std::exit(1);
  }
}
#define CK(expr) Check(CudaStatus((expr), #expr), #expr)

template <typename T>
T Must(Result<T> r, const char* what) {
  Check(r.status(), what);
  return std::move(r).value();
}

void Randomize(std::byte* p, size_t bytes, uint64_t seed) {
  Check(FillRandom(p, bytes, seed, nullptr), "random fill");
  CK(cudaDeviceSynchronize());
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median milliseconds of `fn` enqueued on `stream`, timed with events.
double TimeDevice(cudaStream_t stream, int warmup, int reps, const std::function<void()>& fn) {
  Event a = Must(Event::Create(true), "event"), b = Must(Event::Create(true), "event");
  for (int i = 0; i < warmup; ++i) fn();
  CK(cudaStreamSynchronize(stream));
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(a.get(), stream));
    fn();
    CK(cudaEventRecord(b.get(), stream));
    CK(cudaEventSynchronize(b.get()));
    float t = 0;
    CK(cudaEventElapsedTime(&t, a.get(), b.get()));
    ms.push_back(t);
  }
  return Median(ms);
}

// Median milliseconds of a host-synchronous `fn`, by the host clock.
double TimeHost(int warmup, int reps, const std::function<void()>& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return Median(ms);
}

std::string NvidiaSmiName() {
  FILE* f = popen("nvidia-smi --query-gpu=name,driver_version --format=csv,noheader -i 0 2>/dev/null", "r");
  if (f == nullptr) return "nvidia-smi unavailable";
  char buf[256] = {};
  const bool got = std::fgets(buf, sizeof(buf), f) != nullptr;
  pclose(f);
  std::string s = got ? buf : "nvidia-smi unavailable";
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

double GBps(double bytes, double ms) { return bytes / (ms * 1e-3) / 1e9; }

// The block codec on `blocks` Llama-3-8B-like blocks (32 layers, 16 tokens, 8 KV heads, head_dim
// 128): encode and decode time against a device-to-device cudaMemcpy of the raw bytes, GPU output
// checked against the CPU reference, and the error on realistic KV (kv_sample.h).
void CodecSection(cudaStream_t s, uint32_t blocks, int reps) {
  constexpr uint32_t kDistinct = 16;  // realistic blocks generated on the host, repeated on the device
  std::printf("\n%-9s %-5s %-7s %8s %8s %9s %9s %11s %11s %7s\n", "codec", "dtype", "op", "raw MiB", "enc MiB",
              "ms", "raw GB/s", "traffic GB/s", "memcpy GB/s", "ratio");
  std::vector<std::string> errors;
  for (KvDType dt : {KvDType::kBF16, KvDType::kF16}) {
    for (BlockCodec codec : {BlockCodec::kFp8E4M3, BlockCodec::kInt8}) {
      const CodecGeometry g = Must(CodecGeometry::Make({32, 16, 8, 128, dt}, codec), "geometry");
      std::vector<std::byte> host(size_t(kDistinct) * g.raw_bytes);
      for (uint32_t i = 0; i < kDistinct; ++i) FillRealisticKv(g.shape, 100 + i, host.data() + size_t(i) * g.raw_bytes);
      DeviceBuffer raw = Must(DeviceBuffer::Allocate(size_t(blocks) * g.raw_bytes), "alloc raw");
      DeviceBuffer peer = Must(DeviceBuffer::Allocate(size_t(blocks) * g.raw_bytes), "alloc peer");
      DeviceBuffer enc = Must(DeviceBuffer::Allocate(size_t(blocks) * g.encoded_bytes), "alloc encoded");
      for (uint32_t i = 0; i < blocks; ++i) {
        CK(cudaMemcpy(raw.data() + size_t(i) * g.raw_bytes, host.data() + size_t(i % kDistinct) * g.raw_bytes,
                      g.raw_bytes, cudaMemcpyHostToDevice));
      }
      Randomize(enc.data(), enc.size(), 3);
      std::vector<const std::byte*> craw, cenc;
      std::vector<std::byte*> wraw, wenc;
      for (uint32_t i = 0; i < blocks; ++i) {
        wraw.push_back(raw.data() + size_t(i) * g.raw_bytes);
        craw.push_back(wraw.back());
        wenc.push_back(enc.data() + size_t(i) * g.encoded_bytes);
        cenc.push_back(wenc.back());
      }
      const double raw_bytes = double(blocks) * double(g.raw_bytes);
      const double enc_bytes = double(blocks) * double(g.encoded_bytes);
      const double memcpy_ms = TimeDevice(s, 3, reps, [&] {
        CK(cudaMemcpyAsync(peer.data(), raw.data(), size_t(raw_bytes), cudaMemcpyDeviceToDevice, s));
      });
      const double encode_ms = TimeDevice(s, 3, reps, [&] { Check(EncodeBlocksDevice(g, craw, wenc, s), "encode"); });
      // Check the encoded bytes of the distinct blocks against the CPU reference.
      std::vector<std::byte> got(g.encoded_bytes), want(g.encoded_bytes);
      for (uint32_t i = 0; i < kDistinct && i < blocks; ++i) {
        CK(cudaMemcpy(got.data(), wenc[i], g.encoded_bytes, cudaMemcpyDeviceToHost));
        EncodeBlockHost(g, host.data() + size_t(i) * g.raw_bytes, want.data());
        if (got != want) {
          std::fprintf(stderr, "gpu_bench: device encoding of block %u differs from the CPU reference\n", i);
          std::exit(1);
        }
      }
      const double decode_ms = TimeDevice(s, 3, reps, [&] {
        Check(DecodeBlocksDevice(g, cenc, std::span<std::byte* const>(wraw), nullptr, s), "decode");
      });
      CodecError err;
      std::vector<std::byte> back(g.raw_bytes);
      for (uint32_t i = 0; i < kDistinct && i < blocks; ++i) {
        CK(cudaMemcpy(back.data(), wraw[i], g.raw_bytes, cudaMemcpyDeviceToHost));
        err.Merge(MeasureCodecError(g, host.data() + size_t(i) * g.raw_bytes, back.data()));
      }
      const double mc = GBps(2 * raw_bytes, memcpy_ms);
      for (auto [op, ms] : {std::pair{"encode", encode_ms}, std::pair{"decode", decode_ms}}) {
        const double traffic = GBps(raw_bytes + enc_bytes, ms);
        std::printf("%-9s %-5s %-7s %8.0f %8.1f %9.3f %9.1f %11.1f %11.1f %6.2fx\n",
                    std::string(ToString(codec)).c_str(), std::string(ToString(dt)).c_str(), op,
                    raw_bytes / 1048576.0, enc_bytes / 1048576.0, ms, GBps(raw_bytes, ms), traffic, mc, traffic / mc);
      }
      char line[256];
      std::snprintf(line, sizeof(line), "%-9s %-5s %10zu %10.3g %10.4f %12.4f %10.4f",
                    std::string(ToString(codec)).c_str(), std::string(ToString(dt)).c_str(), size_t(err.elements),
                    err.max_abs, err.max_rel, err.max_abs_over_amax, err.rel_l2);
      errors.emplace_back(line);
    }
  }
  std::printf("\ncodec error on realistic KV (%u blocks, decoded on the GPU, against the original):\n", kDistinct);
  std::printf("%-9s %-5s %10s %10s %10s %12s %10s\n", "codec", "dtype", "elements", "max abs", "max rel",
              "max/amax", "rel L2");
  for (const auto& l : errors) std::printf("%s\n", l.c_str());
}

// Copy-kernel tunings (kv_copy_device.h) side by side, vLLM per-layer layout, dtype 1/2/4 bytes,
// each ratio against a device-to-device cudaMemcpy of the same bytes timed in the same pass. Two
// passes over every variant show the run-to-run spread. `batch` rows move the same chunks with one
// cudaMemcpyBatchAsync (CUDA 12.8+: the copy engines, no kernel) per op instead of a kernel.
// `names` / `dtypes` (comma lists, empty = all) pick rows, e.g. for a short run under ncu.
// A paged KV cache of random bytes in `kind`'s layout (Llama-3-8B-like pages: 32 layers, 16 tokens,
// 8 KV heads, head_dim 128), `pages_moved` of its 2 x pages_moved pages picked at random with
// `shuffle_seed`, contiguous block buffers for them (random bytes too) and a peer buffer of the
// same size for the memcpy ceiling. Seeds are parameters so every section keeps its data.
struct PagedCase {
  KvCacheShape shape;
  std::vector<DeviceBuffer> tensors;
  std::optional<KvLayout> layout;  // KvLayout has no empty state
  std::vector<int32_t> pages;
  size_t bytes = 0;
  DeviceBuffer blocks;
  DeviceBuffer peer;
  std::vector<std::byte*> bufs;
  std::vector<const std::byte*> cbufs;
};

PagedCase MakePagedCase(KvLayoutKind kind, uint32_t dtype, uint32_t pages_moved, uint32_t shuffle_seed,
                        uint64_t tensor_seed, uint64_t blocks_seed) {
  PagedCase c;
  c.shape = KvCacheShape{.num_layers = 32, .num_pages = 2 * pages_moved, .page_tokens = 16, .num_kv_heads = 8,
                         .head_dim = 128, .dtype_bytes = dtype};
  const size_t per_layer = 2 * c.shape.chunk_bytes() * c.shape.num_pages;
  if (kind == KvLayoutKind::kVllmPerLayer) {
    for (uint32_t l = 0; l < c.shape.num_layers; ++l) c.tensors.push_back(Must(DeviceBuffer::Allocate(per_layer), "alloc"));
  } else {
    c.tensors.push_back(Must(DeviceBuffer::Allocate(per_layer * c.shape.num_layers), "alloc"));
  }
  std::vector<void*> bases;
  for (auto& t : c.tensors) {
    Randomize(t.data(), t.size(), tensor_seed + bases.size());
    bases.push_back(t.data());
  }
  c.layout = Must(KvLayout::Make(kind, c.shape, bases), "layout");
  c.pages.resize(c.shape.num_pages);
  for (uint32_t i = 0; i < c.shape.num_pages; ++i) c.pages[i] = int32_t(i);
  std::shuffle(c.pages.begin(), c.pages.end(), std::mt19937(shuffle_seed));
  c.pages.resize(pages_moved);
  c.bytes = size_t(pages_moved) * c.shape.block_bytes();
  c.blocks = Must(DeviceBuffer::Allocate(c.bytes), "alloc blocks");
  c.peer = Must(DeviceBuffer::Allocate(c.bytes), "alloc peer");
  Randomize(c.blocks.data(), c.bytes, blocks_seed);
  for (uint32_t i = 0; i < pages_moved; ++i) {
    c.bufs.push_back(c.blocks.data() + size_t(i) * c.shape.block_bytes());
    c.cbufs.push_back(c.bufs.back());
  }
  return c;
}

void VariantSection(cudaStream_t s, uint32_t pages_moved, int reps, uint32_t seed, const std::string& names,
                    const std::string& dtypes) {
  struct Variant {
    const char* name;
    KvCopyTuning t;
    bool batch = false;
  };
  const auto bulk = [](uint32_t tile_kib, uint32_t stages, uint32_t ctas) {
    return KvCopyTuning{.group_pages = 1, .sort_pages = false, .threads = 128, .ctas_per_sm = ctas,
                        .bulk_stages = stages, .bulk_tile_bytes = tile_kib * 1024};
  };
  const std::vector<Variant> all_variants = {
      {"default-gather", DefaultKvCopyTuning(true)},
      {"default-scatter", DefaultKvCopyTuning(false)},
      {"128x8 c6", {.group_pages = 1, .sort_pages = false, .threads = 128, .ctas_per_sm = 6}},
      {"g1 (old)", {.group_pages = 1, .sort_pages = false, .threads = 256, .ctas_per_sm = 8}},
      {"bulk16Kx2 c4", bulk(16, 2, 4)},
      {"bulk16Kx2 c6", bulk(16, 2, 6)},
      {"bulk16Kx3 c4", bulk(16, 3, 4)},
      {"bulk16Kx4 c2", bulk(16, 4, 2)},
      {"bulk16Kx4 c3", bulk(16, 4, 3)},
      {"bulk16Kx6 c2", bulk(16, 6, 2)},
      {"bulk16Kx12 c1", bulk(16, 12, 1)},
      {"bulk8Kx4 c6", bulk(8, 4, 6)},
      {"bulk8Kx8 c3", bulk(8, 8, 3)},
      {"bulk32Kx3 c2", bulk(32, 3, 2)},
      {"bulk4Kx8 c6", bulk(4, 8, 6)},
      {"memcpy-batch", {}, true},
  };
  const auto listed = [](const std::string& list, const std::string& item) {
    if (list.empty()) return true;
    size_t at = 0;
    while (at <= list.size()) {
      const size_t comma = std::min(list.find(',', at), list.size());
      if (list.compare(at, comma - at, item) == 0) return true;
      at = comma + 1;
    }
    return false;
  };
  std::vector<Variant> variants;
  for (const Variant& v : all_variants) {
    if (listed(names, v.name)) variants.push_back(v);
  }
  std::printf("\ncopy-kernel variants, vllm-per-layer, %u pages per op (page shuffle seed %u); ratio = memcpy ms / "
              "kernel ms, pass 1 / pass 2\n", pages_moved, seed);
  std::printf("%-5s %-16s %17s %17s %14s %5s\n", "dtype", "variant", "gather ratio", "scatter ratio", "scatter GB/s",
              "bulk");
  for (uint32_t dtype : {1u, 2u, 4u}) {
    if (!listed(dtypes, std::to_string(dtype))) continue;
    PagedCase pc = MakePagedCase(KvLayoutKind::kVllmPerLayer, dtype, pages_moved, seed, 0x777, 98);
    const KvCacheShape& shape = pc.shape;
    const KvLayout& layout = *pc.layout;
    const std::vector<int32_t>& all = pc.pages;
    const size_t bytes = pc.bytes;
    DeviceBuffer& blocks = pc.blocks;
    DeviceBuffer& peer = pc.peer;
    std::vector<std::byte*>& bufs = pc.bufs;
    std::vector<const std::byte*>& cbufs = pc.cbufs;
    // The batch rows' copy lists: one entry per (page, layer, K/V) chunk.
    std::vector<void*> cache_chunks, buffer_chunks;
    std::vector<size_t> sizes;
    for (uint32_t i = 0; i < pages_moved; ++i) {
      for (uint32_t l = 0; l < shape.num_layers; ++l) {
        for (uint32_t kv = 0; kv < 2; ++kv) {
          cache_chunks.push_back(layout.ChunkAddress(uint32_t(all[i]), l, kv));
          buffer_chunks.push_back(bufs[i] + layout.ChunkOffsetInBlock(l, kv));
          sizes.push_back(layout.chunk_bytes());
        }
      }
    }
    cudaMemcpyAttributes attr{};
    attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
    attr.srcLocHint.type = cudaMemLocationTypeDevice;
    attr.dstLocHint.type = cudaMemLocationTypeDevice;
    size_t attr_index = 0;
    const auto batch = [&](bool gather) {
      const auto& dst = gather ? buffer_chunks : cache_chunks;
      const auto& src = gather ? cache_chunks : buffer_chunks;
      CK(cudaMemcpyBatchAsync(dst.data(), const_cast<const void* const*>(src.data()), sizes.data(), sizes.size(),
                              &attr, &attr_index, 1, s));
    };
    std::vector<std::array<double, 4>> ratios(variants.size());
    std::vector<double> scatter_gbps(variants.size());
    for (int pass = 0; pass < 2; ++pass) {
      for (size_t v = 0; v < variants.size(); ++v) {
        const double memcpy_ms = TimeDevice(s, 3, reps, [&] {
          CK(cudaMemcpyAsync(peer.data(), blocks.data(), bytes, cudaMemcpyDeviceToDevice, s));
        });
        const double g = TimeDevice(s, 3, reps, [&] {
          if (variants[v].batch) batch(true);
          else Check(DeviceGather(layout, all, bufs, {}, variants[v].t, s), "gather");
        });
        const double sc = TimeDevice(s, 3, reps, [&] {
          if (variants[v].batch) batch(false);
          else Check(DeviceScatter(layout, all, cbufs, {}, variants[v].t, s), "scatter");
        });
        ratios[v][pass] = memcpy_ms / g;
        ratios[v][2 + pass] = memcpy_ms / sc;
        if (pass == 1) scatter_gbps[v] = GBps(double(bytes), sc);
      }
    }
    for (size_t v = 0; v < variants.size(); ++v) {
      const char* path = variants[v].batch ? "CE" : KvCopyUsesBulk(layout, cbufs, variants[v].t) ? "yes" : "no";
      std::printf("%-5u %-16s %8.3f / %5.3f %8.3f / %5.3f %14.1f %5s\n", dtype, variants[v].name, ratios[v][0],
                  ratios[v][1], ratios[v][2], ratios[v][3], scatter_gbps[v], path);
    }
  }
}

// Where a call's time goes, vLLM per-layer layout: each op timed (1) alone from an idle stream, as
// the kernel table does (events around one call: includes the host time spent in the call before
// the launch reaches the GPU), (2) back to back, 8 calls between the events (host work overlaps the
// previous op, as in a pipeline), and (3) its host enqueue time (host clock around the call alone).
// Ratios against cudaMemcpyAsync device-to-device of the same bytes timed the same two ways.
void LaunchSection(cudaStream_t s, uint32_t pages_moved, int reps, uint32_t seed, const std::string& dtypes) {
  constexpr int kBatch = 8;
  struct Variant {
    const char* name;
    KvCopyTuning t;
  };
  const std::vector<Variant> variants = {
      {"ld/st 128x8 c6", {.threads = 128, .ctas_per_sm = 6}},
      {"bulk16Kx4 c2", {.threads = 128, .ctas_per_sm = 2, .bulk_stages = 4, .bulk_tile_bytes = 16384}},
      {"bulk32Kx3 c2", {.threads = 128, .ctas_per_sm = 2, .bulk_stages = 3, .bulk_tile_bytes = 32768}},
      {"bulk16Kx3 c4", {.threads = 128, .ctas_per_sm = 4, .bulk_stages = 3, .bulk_tile_bytes = 16384}},
  };
  std::printf("\nlaunch study, vllm-per-layer, %u pages per op, seed %u: ratio = memcpy / op; single = one call from "
              "idle, b2b = %d calls back to back; enqueue = host us in the call\n", pages_moved, seed, kBatch);
  std::printf("%-5s %-16s %15s %15s %15s %15s %9s\n", "dtype", "variant", "single gather", "single scatter",
              "b2b gather", "b2b scatter", "enq g/s");
  for (uint32_t dtype : {1u, 2u, 4u}) {
    if (!dtypes.empty() && dtypes.find(std::to_string(dtype)) == std::string::npos) continue;
    PagedCase pc = MakePagedCase(KvLayoutKind::kVllmPerLayer, dtype, pages_moved, seed, 0x777, 98);
    const KvLayout& layout = *pc.layout;
    const std::vector<int32_t>& all = pc.pages;
    const size_t bytes = pc.bytes;
    DeviceBuffer& blocks = pc.blocks;
    DeviceBuffer& peer = pc.peer;
    std::vector<std::byte*>& bufs = pc.bufs;
    std::vector<const std::byte*>& cbufs = pc.cbufs;
    const auto memcpy_op = [&] { CK(cudaMemcpyAsync(peer.data(), blocks.data(), bytes, cudaMemcpyDeviceToDevice, s)); };
    for (const Variant& v : variants) {
      const auto g = [&] { Check(DeviceGather(layout, all, bufs, {}, v.t, s), "gather"); };
      const auto sc = [&] { Check(DeviceScatter(layout, all, cbufs, {}, v.t, s), "scatter"); };
      const auto batch = [&](const std::function<void()>& fn) {
        return [&fn] {
          for (int i = 0; i < kBatch; ++i) fn();
        };
      };
      const double m1 = TimeDevice(s, 3, reps, memcpy_op);
      const double g1 = TimeDevice(s, 3, reps, g);
      const double s1 = TimeDevice(s, 3, reps, sc);
      const double mb = TimeDevice(s, 1, reps / 4 + 3, batch(memcpy_op)) / kBatch;
      const double gb = TimeDevice(s, 1, reps / 4 + 3, batch(g)) / kBatch;
      const double sb = TimeDevice(s, 1, reps / 4 + 3, batch(sc)) / kBatch;
      std::vector<double> eg, es, em;
      for (int r = 0; r < reps; ++r) {
        for (auto [fn, out] : {std::pair{std::function<void()>(g), &eg}, std::pair{std::function<void()>(sc), &es},
                               std::pair{std::function<void()>(memcpy_op), &em}}) {
          const auto t0 = std::chrono::steady_clock::now();
          fn();
          out->push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
          CK(cudaStreamSynchronize(s));
        }
      }
      std::printf("%-5u %-16s %15.3f %15.3f %15.3f %15.3f %4.0f/%-4.0f memcpy: %.3f ms single, %.3f b2b, enq %.0f us\n",
                  dtype, v.name, m1 / g1, m1 / s1, mb / gb, mb / sb, Median(eg), Median(es), m1, mb, Median(em));
    }
  }
}

// The ceiling for the HBM tier's traffic (tests/device/hbm_bench.sh): `count` copies of `block_mib`
// MiB each between device memory and pinned host memory, one cudaMemcpyAsync per block on one
// stream, host clock around the whole batch (median of `reps`).
void BlockCopySection(cudaStream_t s, size_t block_mib, uint32_t count, int reps) {
  const size_t block = block_mib << 20, bytes = block * count;
  DeviceBuffer dev = Must(DeviceBuffer::Allocate(bytes), "alloc device");
  Randomize(dev.data(), bytes, 17);
  PinnedBuffer host = Must(PinnedBuffer::Allocate(bytes), "alloc pinned");
  std::memset(host.data(), 0x3C, bytes);
  const double d2h = TimeHost(2, reps, [&] {
    for (uint32_t i = 0; i < count; ++i) {
      CK(cudaMemcpyAsync(host.data() + i * block, dev.data() + i * block, block, cudaMemcpyDeviceToHost, s));
    }
    CK(cudaStreamSynchronize(s));
  });
  const double h2d = TimeHost(2, reps, [&] {
    for (uint32_t i = 0; i < count; ++i) {
      CK(cudaMemcpyAsync(dev.data() + i * block, host.data() + i * block, block, cudaMemcpyHostToDevice, s));
    }
    CK(cudaStreamSynchronize(s));
  });
  std::printf("pinned cudaMemcpyAsync, %u x %zu MiB: D2H %.2f GB/s, H2D %.2f GB/s\n", count, block_mib,
              GBps(double(bytes), d2h), GBps(double(bytes), h2d));
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t pages_moved = 512;
  int reps = 30;
  size_t staging_mib = 1024;
  std::string only = "all";
  uint32_t seed = 11;  // page shuffle of the variant section (the kernel table uses 7)
  std::string variant_names, dtypes;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--pages") pages_moved = static_cast<uint32_t>(std::atoi(argv[i + 1]));
    else if (a == "--reps") reps = std::atoi(argv[i + 1]);
    else if (a == "--staging-mib") staging_mib = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--only") only = argv[i + 1];
    else if (a == "--seed") seed = static_cast<uint32_t>(std::atoi(argv[i + 1]));
    else if (a == "--variants") variant_names = argv[i + 1];
    else if (a == "--dtypes") dtypes = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: gpu_bench [--pages N] [--reps N] [--staging-mib N] [--only all|copy|codec|variants|launch|blockcopy] "
                           "[--seed N] [--variants NAME,NAME] [--dtypes 1,2,4]\n");
      return 2;
    }
  }
  const DeviceSummary devices = ProbeDevices();
  if (devices.count == 0) {
    std::fprintf(stderr, "gpu_bench: no CUDA device: %s\n", devices.reason.c_str());
    return 1;
  }
  const std::string smi = NvidiaSmiName();
  const std::string desc = Must(DescribeDevice(0), "describe device");
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  const GpuDataPathReport path = ProbeGpuDataPath();
  std::printf("device (nvidia-smi): %s\ndevice (runtime): %s\nGPU data path: %s (%s)\n\n", smi.c_str(), desc.c_str(),
              std::string(ToString(path.path)).c_str(), path.reason.c_str());
  Stream stream = Must(Stream::Create(), "stream");
  cudaStream_t s = stream.get();
  const int warmup = 3;
  if (only == "variants") {
    VariantSection(s, pages_moved, reps, seed, variant_names, dtypes);
    std::printf("\ndevice: %s\n", smi.c_str());
    return 0;
  }
  if (only == "launch") {
    LaunchSection(s, pages_moved, reps, seed, dtypes);
    std::printf("\ndevice: %s\n", smi.c_str());
    return 0;
  }
  if (only == "blockcopy") {
    BlockCopySection(s, 1, pages_moved, reps);
    return 0;
  }
  if (only == "codec") {
    CodecSection(s, pages_moved, reps);
    std::printf("\ndevice: %s\n", smi.c_str());
    return 0;
  }

  std::printf("%-16s %-5s %-8s %9s %10s %10s %10s %8s\n", "layout", "dtype", "op", "MiB", "kernel", "memcpyD2D",
              "GB/s", "ratio");
  // Llama-3-8B-like pages: 32 layers, 16 tokens, 8 KV heads, head_dim 128 (2 MiB per block at bf16).
  for (KvLayoutKind kind : {KvLayoutKind::kVllmPerLayer, KvLayoutKind::kLayerMajor, KvLayoutKind::kPageMajor}) {
    for (uint32_t dtype : {2u, 1u, 4u}) {
      if (kind != KvLayoutKind::kVllmPerLayer && dtype != 2) continue;
      PagedCase pc = MakePagedCase(kind, dtype, pages_moved, 7, 0x1234, 99);
      const KvLayout& layout = *pc.layout;
      const std::vector<int32_t>& all = pc.pages;
      const size_t bytes = pc.bytes;
      DeviceBuffer& blocks = pc.blocks;
      DeviceBuffer& peer = pc.peer;
      std::vector<std::byte*>& bufs = pc.bufs;
      std::vector<const std::byte*>& cbufs = pc.cbufs;
      const double memcpy_ms = TimeDevice(s, warmup, reps, [&] {
        CK(cudaMemcpyAsync(peer.data(), blocks.data(), bytes, cudaMemcpyDeviceToDevice, s));
      });
      const double gather_ms =
          TimeDevice(s, warmup, reps, [&] { Check(DeviceGather(layout, all, bufs, {}, s), "gather"); });
      const double scatter_ms =
          TimeDevice(s, warmup, reps, [&] { Check(DeviceScatter(layout, all, cbufs, {}, s), "scatter"); });
      for (auto [op, ms] : {std::pair{"gather", gather_ms}, std::pair{"scatter", scatter_ms}}) {
        std::printf("%-16s %-5u %-8s %9.0f %8.3fms %8.3fms %10.1f %7.2fx\n", std::string(ToString(kind)).c_str(),
                    dtype, op, bytes / 1048576.0, ms, memcpy_ms, GBps(double(bytes), ms), memcpy_ms / ms);
      }
      std::printf("%-16s %-5s %-8s %9s %10s %10s %10.1f\n", "", "", "memcpy", "", "", "", GBps(double(bytes), memcpy_ms));
    }
  }

  // Staging: the pipeline against one plain copy of the same bytes with pinned host memory.
  const size_t sbytes = staging_mib << 20;
  DeviceBuffer dev = Must(DeviceBuffer::Allocate(sbytes), "alloc staging source");
  Randomize(dev.data(), sbytes, 5);
  PinnedBuffer host = Must(PinnedBuffer::Allocate(sbytes), "alloc pinned");
  std::memset(host.data(), 0x5A, sbytes);
  const int sreps = std::max(5, reps / 3);
  const double plain_d2h = TimeHost(2, sreps, [&] {
    CK(cudaMemcpyAsync(host.data(), dev.data(), sbytes, cudaMemcpyDeviceToHost, s));
    CK(cudaStreamSynchronize(s));
  });
  const double plain_h2d = TimeHost(2, sreps, [&] {
    CK(cudaMemcpyAsync(dev.data(), host.data(), sbytes, cudaMemcpyHostToDevice, s));
    CK(cudaStreamSynchronize(s));
  });
  std::printf("\n%-28s %9s %10s %10s %8s\n", "staging (slots x MiB)", "MiB", "GB/s", "plain GB/s", "ratio");
  for (size_t slot_mib : {2, 8, 32}) {
    for (size_t slots : {2, 4}) {
      auto pipe = Must(StagingPipeline::Create({.slot_bytes = slot_mib << 20, .slots = slots}), "staging");
      const auto noop_consume = [](size_t, std::span<const std::byte>) { return Status::Ok(); };
      const auto noop_produce = [](size_t, std::span<std::byte>) { return Status::Ok(); };
      const double d2h = TimeHost(2, sreps, [&] { Check(pipe->Download(dev.data(), sbytes, noop_consume), "download"); });
      const double h2d = TimeHost(2, sreps, [&] { Check(pipe->Upload(dev.data(), sbytes, noop_produce), "upload"); });
      char label[64];
      std::snprintf(label, sizeof(label), "D2H %zu x %zu", slots, slot_mib);
      std::printf("%-28s %9zu %10.1f %10.1f %7.2fx\n", label, staging_mib, GBps(double(sbytes), d2h),
                  GBps(double(sbytes), plain_d2h), plain_d2h / d2h);
      std::snprintf(label, sizeof(label), "H2D %zu x %zu", slots, slot_mib);
      std::printf("%-28s %9zu %10.1f %10.1f %7.2fx\n", label, staging_mib, GBps(double(sbytes), h2d),
                  GBps(double(sbytes), plain_h2d), plain_h2d / h2d);
    }
  }
  if (only == "all") CodecSection(s, pages_moved, reps);
  std::printf("\nL2 %d MiB; kernel data %u pages x %.1f MiB per op; device: %s\n", prop.l2CacheSize >> 20,
              pages_moved, 32 * 2 * 16 * 8 * 128 * 2 / 1048576.0, smi.c_str());
  return 0;
}
