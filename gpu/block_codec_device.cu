#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "gpu/block_codec_device.h"
#include "gpu/cuda_util.h"

namespace kvstash::gpu {

namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerCta = kThreads / 32;

// Passed by value as a __grid_constant__ parameter (about 4 KiB): no argument upload.
struct CodecArgs {
  uint64_t raw[kMaxCodecBlocksPerLaunch];
  uint64_t encoded[kMaxCodecBlocksPerLaunch];
  uint32_t header[kCodecHeaderBytes / 4];
  uint32_t layers, tokens, heads, head_dim;
  uint32_t layer_elements;
  uint32_t scales_bytes, payload_bytes, section_bytes;
  float qmax;
  uint32_t* bad_blocks;
};

template <int DT>
__device__ __forceinline__ float FromBits(uint16_t b) {
  if constexpr (DT == static_cast<int>(KvDType::kF16)) {
    return __half2float(__ushort_as_half(b));
  } else {
    return __bfloat162float(__ushort_as_bfloat16(b));
  }
}

template <int DT>
__device__ __forceinline__ uint16_t ToBits(float f) {
  if constexpr (DT == static_cast<int>(KvDType::kF16)) {
    return __half_as_ushort(__float2half_rn(f));
  } else {
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
  }
}

// Loads N consecutive elements starting at element `i` of `base` as floats.
template <int DT, int N>
__device__ __forceinline__ void LoadN(const std::byte* base, uint32_t i, float (&v)[N]) {
  if constexpr (N == 8) {
    if constexpr (DT == static_cast<int>(KvDType::kF32)) {
      const float4* p = reinterpret_cast<const float4*>(base + uint64_t{i} * 4);
      const float4 a = p[0], b = p[1];
      v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    } else {
      const uint4 u = *reinterpret_cast<const uint4*>(base + uint64_t{i} * 2);
      const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        v[2 * k] = FromBits<DT>(static_cast<uint16_t>(w[k] & 0xFFFF));
        v[2 * k + 1] = FromBits<DT>(static_cast<uint16_t>(w[k] >> 16));
      }
    }
  } else {
    if constexpr (DT == static_cast<int>(KvDType::kF32)) {
      v[0] = reinterpret_cast<const float*>(base)[i];
    } else {
      v[0] = FromBits<DT>(reinterpret_cast<const uint16_t*>(base)[i]);
    }
  }
}

template <int DT, int N>
__device__ __forceinline__ void StoreN(std::byte* base, uint32_t i, const float (&v)[N]) {
  if constexpr (N == 8) {
    if constexpr (DT == static_cast<int>(KvDType::kF32)) {
      float4* p = reinterpret_cast<float4*>(base + uint64_t{i} * 4);
      p[0] = make_float4(v[0], v[1], v[2], v[3]);
      p[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
      uint32_t w[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) w[k] = uint32_t{ToBits<DT>(v[2 * k])} | (uint32_t{ToBits<DT>(v[2 * k + 1])} << 16);
      *reinterpret_cast<uint4*>(base + uint64_t{i} * 2) = make_uint4(w[0], w[1], w[2], w[3]);
    }
  } else {
    if constexpr (DT == static_cast<int>(KvDType::kF32)) {
      reinterpret_cast<float*>(base)[i] = v[0];
    } else {
      reinterpret_cast<uint16_t*>(base)[i] = ToBits<DT>(v[0]);
    }
  }
}

template <bool kInt8>
__device__ __forceinline__ uint8_t Quantize(float v) {
  if constexpr (kInt8) {
    if (isnan(v)) return 0;
    return static_cast<uint8_t>(static_cast<int8_t>(max(-127, min(127, __float2int_rn(v)))));
  } else {
    return static_cast<uint8_t>(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
  }
}

template <bool kInt8>
__device__ __forceinline__ float Dequantize(uint8_t q) {
  if constexpr (kInt8) {
    return static_cast<float>(static_cast<int8_t>(q));
  } else {
    return __half2float(__half(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(q), __NV_E4M3)));
  }
}

// One warp per (block = blockIdx.y, layer, kv, head).
template <int DT, bool kInt8, int N>
__global__ void __launch_bounds__(kThreads) EncodeKernel(const __grid_constant__ CodecArgs a) {
  const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const uint32_t group = blockIdx.x * kWarpsPerCta + warp;
  if (group >= a.layers * 2 * a.heads) return;
  const uint32_t h = group % a.heads;
  const uint32_t kv = (group / a.heads) % 2;
  const uint32_t l = group / (2 * a.heads);
  const std::byte* raw = reinterpret_cast<const std::byte*>(a.raw[blockIdx.y]);
  std::byte* enc = reinterpret_cast<std::byte*>(a.encoded[blockIdx.y]);
  std::byte* section = enc + kCodecHeaderBytes + uint64_t{l} * a.section_bytes;
  uint8_t* payload = reinterpret_cast<uint8_t*>(section + a.scales_bytes);

  const uint32_t per_row = a.head_dim / N;  // vectors per token row of this head
  const uint32_t count = a.tokens * per_row;
  const uint32_t lk_base = (l * 2 + kv) * a.tokens;  // first token row of this (layer, kv)
  // The first kCached vectors of each lane stay in registers for the second pass (a whole
  // 16-token x 128-dim head at 8 elements per vector); the rest, if any, is re-read from L1/L2.
  constexpr uint32_t kCached = N == 8 ? 8 : 1;
  float cache[kCached][N];
  float amax = 0.0f;
#pragma unroll
  for (uint32_t j = 0; j < kCached; ++j) {
    const uint32_t v = lane + 32 * j;
    if (v < count) {
      const uint32_t t = v / per_row, c = v % per_row;
      LoadN<DT, N>(raw, ((lk_base + t) * a.heads + h) * a.head_dim + c * N, cache[j]);
#pragma unroll
      for (int k = 0; k < N; ++k) amax = fmaxf(amax, isfinite(cache[j][k]) ? fabsf(cache[j][k]) : 0.0f);
    }
  }
  for (uint32_t v = lane + 32 * kCached; v < count; v += 32) {
    const uint32_t t = v / per_row, c = v % per_row;
    float x[N];
    LoadN<DT, N>(raw, ((lk_base + t) * a.heads + h) * a.head_dim + c * N, x);
#pragma unroll
    for (int k = 0; k < N; ++k) amax = fmaxf(amax, isfinite(x[k]) ? fabsf(x[k]) : 0.0f);
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, off));
  const float scale = amax / a.qmax;
  const float inv = amax > 0.0f ? fminf(a.qmax / amax, 3.402823466e38f) : 0.0f;
  if (lane == 0) {
    reinterpret_cast<float*>(section)[kv * a.heads + h] = scale;
    if (group == 0) {
#pragma unroll
      for (int k = 0; k < static_cast<int>(kCodecHeaderBytes / 4); ++k) reinterpret_cast<uint32_t*>(enc)[k] = a.header[k];
    }
    if (kv == 0 && h == 0) {  // this layer's padding, so encoded bytes are deterministic
      for (uint32_t b = 2 * a.heads * 4; b < a.scales_bytes; ++b) section[b] = std::byte{0};
      for (uint32_t b = a.layer_elements; b < a.payload_bytes; ++b) payload[b] = 0;
    }
  }
  const auto quantize = [&](uint32_t v, const float (&x)[N]) {
    const uint32_t t = v / per_row, c = v % per_row;
    const uint32_t at = ((kv * a.tokens + t) * a.heads + h) * a.head_dim + c * N;
    if constexpr (N == 8) {
      uint32_t w[2] = {0, 0};
#pragma unroll
      for (int k = 0; k < 8; ++k) w[k / 4] |= uint32_t{Quantize<kInt8>(x[k] * inv)} << (8 * (k % 4));
      *reinterpret_cast<uint2*>(payload + at) = make_uint2(w[0], w[1]);
    } else {
      payload[at] = Quantize<kInt8>(x[0] * inv);
    }
  };
#pragma unroll
  for (uint32_t j = 0; j < kCached; ++j) {
    if (lane + 32 * j < count) quantize(lane + 32 * j, cache[j]);
  }
  for (uint32_t v = lane + 32 * kCached; v < count; v += 32) {
    const uint32_t t = v / per_row, c = v % per_row;
    float x[N];
    LoadN<DT, N>(raw, ((lk_base + t) * a.heads + h) * a.head_dim + c * N, x);
    quantize(v, x);
  }
}

// One thread per N elements of block blockIdx.y, grid-stride over the block.
template <int DT, bool kInt8, int N>
__global__ void __launch_bounds__(kThreads) DecodeKernel(const __grid_constant__ CodecArgs a) {
  const std::byte* enc = reinterpret_cast<const std::byte*>(a.encoded[blockIdx.y]);
  std::byte* raw = reinterpret_cast<std::byte*>(a.raw[blockIdx.y]);
  const uint4* hv = reinterpret_cast<const uint4*>(enc);
  const uint4 h0 = hv[0], h1 = hv[1];
  const bool ok = h0.x == a.header[0] && h0.y == a.header[1] && h0.z == a.header[2] && h0.w == a.header[3] &&
                  h1.x == a.header[4] && h1.y == a.header[5] && h1.z == a.header[6] && h1.w == a.header[7];
  if (!ok) {
    if (blockIdx.x == 0 && threadIdx.x == 0 && a.bad_blocks != nullptr) atomicAdd(a.bad_blocks, 1u);
    return;
  }
  const uint32_t half_layer = a.layer_elements / 2;
  const uint32_t count = a.layers * (a.layer_elements / N);
  for (uint32_t v = blockIdx.x * kThreads + threadIdx.x; v < count; v += gridDim.x * kThreads) {
    const uint32_t e = v * N;
    const uint32_t l = e / a.layer_elements;
    const uint32_t at = e - l * a.layer_elements;
    const uint32_t kv = at / half_layer;
    const uint32_t h = (at / a.head_dim) % a.heads;
    const std::byte* section = enc + kCodecHeaderBytes + uint64_t{l} * a.section_bytes;
    const float scale = reinterpret_cast<const float*>(section)[kv * a.heads + h];
    const uint8_t* payload = reinterpret_cast<const uint8_t*>(section + a.scales_bytes);
    float x[N];
    if constexpr (N == 8) {
      const uint2 q = *reinterpret_cast<const uint2*>(payload + at);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        x[k] = Dequantize<kInt8>(static_cast<uint8_t>(((k < 4 ? q.x : q.y) >> (8 * (k % 4))) & 0xFF)) * scale;
      }
    } else {
      x[0] = Dequantize<kInt8>(payload[at]) * scale;
    }
    StoreN<DT, N>(raw, e, x);
  }
}

using Kernel = void (*)(CodecArgs);

template <bool kEncode, int DT, bool kInt8>
Kernel PickWidth(bool vec) {
  if constexpr (kEncode) {
    return vec ? EncodeKernel<DT, kInt8, 8> : EncodeKernel<DT, kInt8, 1>;
  } else {
    return vec ? DecodeKernel<DT, kInt8, 8> : DecodeKernel<DT, kInt8, 1>;
  }
}

template <bool kEncode>
Kernel Pick(const CodecGeometry& g, bool vec) {
  const bool i8 = g.codec == BlockCodec::kInt8;
  switch (g.shape.dtype) {
    case KvDType::kF16:
      return i8 ? PickWidth<kEncode, static_cast<int>(KvDType::kF16), true>(vec)
                : PickWidth<kEncode, static_cast<int>(KvDType::kF16), false>(vec);
    case KvDType::kBF16:
      return i8 ? PickWidth<kEncode, static_cast<int>(KvDType::kBF16), true>(vec)
                : PickWidth<kEncode, static_cast<int>(KvDType::kBF16), false>(vec);
    case KvDType::kF32:
      return i8 ? PickWidth<kEncode, static_cast<int>(KvDType::kF32), true>(vec)
                : PickWidth<kEncode, static_cast<int>(KvDType::kF32), false>(vec);
  }
  return nullptr;
}

template <typename P>
bool Aligned16(std::span<P const> ptrs) {
  return std::all_of(ptrs.begin(), ptrs.end(), [](P p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; });
}

template <typename R, typename E>
Status Launch(bool encode, const CodecGeometry& g, std::span<R const> raw, std::span<E const> enc, uint32_t* bad,
              cudaStream_t stream) {
  if (raw.size() != enc.size()) {
    return InvalidArgument(std::to_string(raw.size()) + " raw buffers for " + std::to_string(enc.size()) +
                           " encoded buffers");
  }
  if (g.codec == BlockCodec::kNone) return InvalidArgument("codec 'none' has no encoded form");
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == nullptr || enc[i] == nullptr) return InvalidArgument("null buffer for block " + std::to_string(i));
  }
  if (raw.empty()) return Status::Ok();
  if (!Aligned16(enc)) return InvalidArgument("encoded block buffers must be 16-byte aligned");
  const uint32_t eb = DTypeBytes(g.shape.dtype);
  for (size_t i = 0; i < raw.size(); ++i) {
    if (reinterpret_cast<uintptr_t>(raw[i]) % eb != 0) {
      return InvalidArgument("raw block buffer " + std::to_string(i) + " is not aligned to its " + std::to_string(eb) +
                             "-byte elements");
    }
  }
  const bool vec = g.shape.head_dim % 8 == 0 && Aligned16(raw);
  const Kernel kernel = encode ? Pick<true>(g, vec) : Pick<false>(g, vec);
  CodecArgs a{};
  std::byte header[kCodecHeaderBytes];
  WriteCodecHeader(g, header);
  std::memcpy(a.header, header, sizeof(header));
  a.layers = g.shape.layers;
  a.tokens = g.shape.tokens;
  a.heads = g.shape.heads;
  a.head_dim = g.shape.head_dim;
  a.layer_elements = static_cast<uint32_t>(g.layer_elements);
  a.scales_bytes = static_cast<uint32_t>(g.scales_bytes);
  a.payload_bytes = static_cast<uint32_t>(g.payload_bytes);
  a.section_bytes = static_cast<uint32_t>(g.section_bytes);
  a.qmax = g.codec == BlockCodec::kInt8 ? 127.0f : 448.0f;
  a.bad_blocks = bad;
  const uint64_t groups = uint64_t{g.shape.layers} * 2 * g.shape.heads;
  const uint64_t per_thread = vec ? 8 : 1;
  const uint64_t decode_ctas = (uint64_t{g.shape.layers} * g.layer_elements / per_thread + kThreads - 1) / kThreads;
  const dim3 block(kThreads);
  for (size_t first = 0; first < raw.size(); first += kMaxCodecBlocksPerLaunch) {
    const size_t n = std::min(raw.size() - first, kMaxCodecBlocksPerLaunch);
    for (size_t i = 0; i < n; ++i) {
      a.raw[i] = reinterpret_cast<uint64_t>(raw[first + i]);
      a.encoded[i] = reinterpret_cast<uint64_t>(enc[first + i]);
    }
    const dim3 grid(static_cast<uint32_t>(encode ? (groups + kWarpsPerCta - 1) / kWarpsPerCta
                                                 : std::min<uint64_t>(decode_ctas, 65535)),
                    static_cast<uint32_t>(n));
    kernel<<<grid, block, 0, stream>>>(a);
    KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaGetLastError(), encode ? "launching the codec encode kernel"
                                                                    : "launching the codec decode kernel"));
  }
  return Status::Ok();
}

}  // namespace

Status EncodeBlocksDevice(const CodecGeometry& g, std::span<const std::byte* const> raw,
                          std::span<std::byte* const> encoded, cudaStream_t stream) {
  return Launch(true, g, raw, encoded, nullptr, stream);
}

Status DecodeBlocksDevice(const CodecGeometry& g, std::span<const std::byte* const> encoded,
                          std::span<std::byte* const> raw, uint32_t* bad_blocks, cudaStream_t stream) {
  return Launch(false, g, raw, encoded, bad_blocks, stream);
}

}  // namespace kvstash::gpu
