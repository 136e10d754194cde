#include "node/cuda_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cmath>

namespace kvstash::node::cuda {
namespace {

using Bf16 = __nv_bfloat16;
using Fp16 = __half;

__device__ __forceinline__ float ToF32(Bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float ToF32(Fp16 v) { return __half2float(v); }
template <typename T>
__device__ __forceinline__ T FromF32(float v);
template <>
__device__ __forceinline__ Bf16 FromF32<Bf16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ Fp16 FromF32<Fp16>(float v) { return __float2half_rn(v); }

__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// ---- embedding, norm, SwiGLU ----------------------------------------------------------------

template <typename T>
__global__ void EmbedKernel(const T* table, const uint32_t* tokens, uint32_t hidden, float* x) {
  const T* row = table + static_cast<size_t>(tokens[blockIdx.x]) * hidden;
  float* out = x + static_cast<size_t>(blockIdx.x) * hidden;
  for (uint32_t i = threadIdx.x; i < hidden; i += blockDim.x) out[i] = ToF32(row[i]);
}

template <typename T>
__global__ void RmsNormKernel(const float* x, const T* weight, uint32_t hidden, float eps, T* out) {
  const float* row = x + static_cast<size_t>(blockIdx.x) * hidden;
  float sum = 0.0f;
  for (uint32_t i = threadIdx.x; i < hidden; i += blockDim.x) sum += row[i] * row[i];
  __shared__ float partial[32];
  sum = WarpSum(sum);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.0f;
    v = WarpSum(v);
    if (threadIdx.x == 0) partial[0] = v;
  }
  __syncthreads();
  const float scale = 1.0f / sqrtf(partial[0] / static_cast<float>(hidden) + eps);
  T* o = out + static_cast<size_t>(blockIdx.x) * hidden;
  for (uint32_t i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = FromF32<T>(ToF32(weight[i]) * (row[i] * scale));
}

template <typename T>
__global__ void SwiGluKernel(const T* gate_up, uint32_t n, uint32_t inter, T* out) {
  const size_t total = static_cast<size_t>(n) * inter;
  for (size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t t = idx / inter, i = idx % inter;
    const float g = ToF32(gate_up[t * 2 * inter + i]), u = ToF32(gate_up[t * 2 * inter + inter + i]);
    out[idx] = FromF32<T>(g / (1.0f + expf(-g)) * u);
  }
}

// ---- rotary embeddings and the KV write -----------------------------------------------------

template <typename T>
__device__ __forceinline__ T* KvAt(const PagedKv& kv, uint32_t pos, uint32_t which, uint32_t g, uint32_t hd) {
  const uint32_t page = kv.page_table[pos / kv.page_tokens];
  std::byte* plane = kv.pool + page * kv.page_bytes + (2 * size_t{kv.layer} + which) * kv.plane_bytes;
  return reinterpret_cast<T*>(plane) + (static_cast<size_t>(g) * kv.page_tokens + pos % kv.page_tokens) * hd;
}

template <typename T>
__global__ void RopeKvKernel(T* qkv, const float* inv_freq, AttentionShape s, PagedKv kv) {
  const uint32_t t = blockIdx.x, pos = s.start + t, hd = s.head_dim, half = hd / 2;
  const uint32_t width = (s.heads + 2 * s.kv_heads) * hd;
  T* row = qkv + static_cast<size_t>(t) * width;
  // Rotated pairs of q heads (in place) and k heads (into the K plane).
  for (uint32_t idx = threadIdx.x; idx < (s.heads + s.kv_heads) * half; idx += blockDim.x) {
    const uint32_t head = idx / half, i = idx % half;
    T* v = row + head * hd;
    const float a = ToF32(v[i]), b = ToF32(v[i + half]);
    float sn, cs;
    sincosf(static_cast<float>(pos) * inv_freq[i], &sn, &cs);
    const T ra = FromF32<T>(a * cs - b * sn), rb = FromF32<T>(b * cs + a * sn);
    if (head < s.heads) {
      v[i] = ra;
      v[i + half] = rb;
    } else {
      T* k = KvAt<T>(kv, pos, 0, head - s.heads, hd);
      k[i] = ra;
      k[i + half] = rb;
    }
  }
  const T* vsrc = row + (s.heads + s.kv_heads) * hd;
  for (uint32_t idx = threadIdx.x; idx < s.kv_heads * hd; idx += blockDim.x) {
    KvAt<T>(kv, pos, 1, idx / hd, hd)[idx % hd] = vsrc[idx];
  }
}

// ---- paged attention: flash-style tiles on the tensor cores ---------------------------------
//
// A block takes 64 consecutive rows of the (token, query head of KV head g) space — row r is token
// r / group, query head g * group + r % group — so the group's heads share every K/V tile it loads.
// Four warps own 16 rows each. Per tile of 64 keys: S = Q K^T (wmma, fp32), an online softmax per
// row in fp32 (running max m, sum l; the output rescaled by exp(m_old - m_new)), P rounded to the
// 16-bit type, O += P V (wmma, fp32 accumulators kept in shared memory). Keys past a row's position
// get probability 0; K/V rows past the block's last position are zero-filled (pages may hold
// anything there).

constexpr int kRows = 64, kKeys = 64, kThreads = 128;

template <int HD>
struct AttnSmem {
  static constexpr int kQs = HD + 8, kSs = kKeys + 4, kPs = kKeys + 8, kOs = HD + 4;
  static constexpr size_t kQ = 0;
  static constexpr size_t kK = kQ + size_t{kRows} * kQs * 2;
  static constexpr size_t kV = kK + size_t{kKeys} * kQs * 2;
  static constexpr size_t kS = kV + size_t{kKeys} * kQs * 2;
  static constexpr size_t kP = kS + size_t{kRows} * kSs * 4;
  static constexpr size_t kO = kP + size_t{kRows} * kPs * 2;
  static constexpr size_t kM = kO + size_t{kRows} * kOs * 4;
  static constexpr size_t kL = kM + size_t{kRows} * 4;
  static constexpr size_t kBytes = kL + size_t{kRows} * 4;
  static_assert(kK % 32 == 0 && kV % 32 == 0 && kS % 32 == 0 && kP % 32 == 0 && kO % 32 == 0, "wmma alignment");
};

template <typename T, int HD>
__global__ void __launch_bounds__(kThreads) AttentionKernel(const T* qkv, AttentionShape s, PagedKv kv, T* out) {
  using namespace nvcuda;
  using L = AttnSmem<HD>;
  extern __shared__ __align__(128) unsigned char smem[];
  T* sq = reinterpret_cast<T*>(smem + L::kQ);
  T* sk = reinterpret_cast<T*>(smem + L::kK);
  T* sv = reinterpret_cast<T*>(smem + L::kV);
  float* ss = reinterpret_cast<float*>(smem + L::kS);
  T* sp = reinterpret_cast<T*>(smem + L::kP);
  float* so = reinterpret_cast<float*>(smem + L::kO);
  float* sm = reinterpret_cast<float*>(smem + L::kM);
  float* sl = reinterpret_cast<float*>(smem + L::kL);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const uint32_t g = blockIdx.y, group = s.heads / s.kv_heads;
  const uint64_t total_rows = uint64_t{s.n} * group, row0 = uint64_t{blockIdx.x} * kRows;
  const uint32_t width = (s.heads + 2 * s.kv_heads) * HD;
  constexpr int kVec = 8;  // 16-bit elements per 16-byte access
  const float scale = rsqrtf(static_cast<float>(HD));

  for (int idx = threadIdx.x; idx < kRows * (HD / kVec); idx += kThreads) {
    const int r = idx / (HD / kVec), c = (idx % (HD / kVec)) * kVec;
    const uint64_t gr = row0 + r;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (gr < total_rows) {
      const uint64_t t = gr / group, j = gr % group;
      v = *reinterpret_cast<const uint4*>(qkv + t * width + (g * group + j) * HD + c);
    }
    *reinterpret_cast<uint4*>(sq + r * L::kQs + c) = v;
  }
  for (int idx = threadIdx.x; idx < kRows * L::kOs; idx += kThreads) so[idx] = 0.0f;
  for (int idx = threadIdx.x; idx < kRows; idx += kThreads) {
    sm[idx] = -INFINITY;
    sl[idx] = 0.0f;
  }
  const uint64_t last_row = min(row0 + kRows, total_rows) - 1;
  const uint32_t kv_len = s.start + static_cast<uint32_t>(last_row / group) + 1;

  for (uint32_t k0 = 0; k0 < kv_len; k0 += kKeys) {
    __syncthreads();  // the previous tile's K/V are no longer read
    for (int idx = threadIdx.x; idx < kKeys * (HD / kVec); idx += kThreads) {
      const int r = idx / (HD / kVec), c = (idx % (HD / kVec)) * kVec;
      const uint32_t p = k0 + r;
      uint4 kvec = make_uint4(0, 0, 0, 0), vvec = make_uint4(0, 0, 0, 0);
      if (p < kv_len) {
        kvec = *reinterpret_cast<const uint4*>(KvAt<T>(kv, p, 0, g, HD) + c);
        vvec = *reinterpret_cast<const uint4*>(KvAt<T>(kv, p, 1, g, HD) + c);
      }
      *reinterpret_cast<uint4*>(sk + r * L::kQs + c) = kvec;
      *reinterpret_cast<uint4*>(sv + r * L::kQs + c) = vvec;
    }
    __syncthreads();

    // S = Q K^T for this warp's 16 rows.
    for (int c = 0; c < kKeys / 16; ++c) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int kk = 0; kk < HD / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
        wmma::load_matrix_sync(fa, sq + (warp * 16) * L::kQs + kk * 16, L::kQs);
        wmma::load_matrix_sync(fb, sk + (c * 16) * L::kQs + kk * 16, L::kQs);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(ss + (warp * 16) * L::kSs + c * 16, acc, L::kSs, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax over the tile, one row at a time across the warp's lanes.
    for (int rr = 0; rr < 16; ++rr) {
      const int r = warp * 16 + rr;
      const uint64_t gr = row0 + r;
      if (gr >= total_rows) {  // padding row: contributes nothing, never written out
        sp[r * L::kPs + lane] = FromF32<T>(0.0f);
        sp[r * L::kPs + lane + 32] = FromF32<T>(0.0f);
        continue;
      }
      const uint32_t pos = s.start + static_cast<uint32_t>(gr / group);
      const bool in0 = k0 + lane <= pos, in1 = k0 + lane + 32 <= pos;
      const float s0 = in0 ? ss[r * L::kSs + lane] * scale : -INFINITY;
      const float s1 = in1 ? ss[r * L::kSs + lane + 32] * scale : -INFINITY;
      const float m_old = sm[r];
      const float m_new = fmaxf(m_old, WarpMax(fmaxf(s0, s1)));  // finite: key 0 is visible in tile 0
      const float p0 = in0 ? expf(s0 - m_new) : 0.0f, p1 = in1 ? expf(s1 - m_new) : 0.0f;
      const float alpha = expf(m_old - m_new);
      const float sum = WarpSum(p0 + p1);
      sp[r * L::kPs + lane] = FromF32<T>(p0);
      sp[r * L::kPs + lane + 32] = FromF32<T>(p1);
      for (int d = lane; d < HD; d += 32) so[r * L::kOs + d] *= alpha;
      __syncwarp();
      if (lane == 0) {
        sm[r] = m_new;
        sl[r] = sl[r] * alpha + sum;
      }
    }
    __syncwarp();

    // O += P V for this warp's rows.
    for (int dc = 0; dc < HD / 16; ++dc) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, so + (warp * 16) * L::kOs + dc * 16, L::kOs, wmma::mem_row_major);
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb;
        wmma::load_matrix_sync(fa, sp + (warp * 16) * L::kPs + kk * 16, L::kPs);
        wmma::load_matrix_sync(fb, sv + (kk * 16) * L::kQs + dc * 16, L::kQs);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(so + (warp * 16) * L::kOs + dc * 16, acc, L::kOs, wmma::mem_row_major);
    }
    __syncwarp();
  }

  for (int rr = 0; rr < 16; ++rr) {
    const int r = warp * 16 + rr;
    const uint64_t gr = row0 + r;
    if (gr >= total_rows) break;
    const uint64_t t = gr / group, h = g * group + gr % group;
    const float inv = 1.0f / sl[r];
    T* o = out + (t * s.heads + h) * HD;
    for (int d = lane; d < HD; d += 32) o[d] = FromF32<T>(so[r * L::kOs + d] * inv);
  }
}

template <typename T, int HD>
cudaError_t LaunchAttention(const T* qkv, const AttentionShape& s, const PagedKv& kv, T* out, cudaStream_t stream) {
  using L = AttnSmem<HD>;
  static const cudaError_t configured =
      cudaFuncSetAttribute(AttentionKernel<T, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, int{L::kBytes});
  if (configured != cudaSuccess) return configured;
  const uint64_t rows = uint64_t{s.n} * (s.heads / s.kv_heads);
  const dim3 grid(static_cast<unsigned>((rows + kRows - 1) / kRows), s.kv_heads);
  AttentionKernel<T, HD><<<grid, kThreads, L::kBytes, stream>>>(qkv, s, kv, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t Attention(const void* qkv, const AttentionShape& s, const PagedKv& kv, void* out, cudaStream_t stream) {
  const T* q = static_cast<const T*>(qkv);
  T* o = static_cast<T*>(out);
  switch (s.head_dim) {
    case 16: return LaunchAttention<T, 16>(q, s, kv, o, stream);
    case 32: return LaunchAttention<T, 32>(q, s, kv, o, stream);
    case 64: return LaunchAttention<T, 64>(q, s, kv, o, stream);
    case 128: return LaunchAttention<T, 128>(q, s, kv, o, stream);
    case 256: return LaunchAttention<T, 256>(q, s, kv, o, stream);
    default: return cudaErrorInvalidValue;
  }
}

unsigned ElementwiseBlocks(size_t total) {
  const size_t blocks = (total + 255) / 256;
  return static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

}  // namespace

cudaError_t EmbedTokens(Half dt, const void* table, const uint32_t* tokens, uint32_t n, uint32_t hidden, float* x,
                        cudaStream_t stream) {
  if (dt == Half::kBf16) {
    EmbedKernel<<<n, 256, 0, stream>>>(static_cast<const Bf16*>(table), tokens, hidden, x);
  } else {
    EmbedKernel<<<n, 256, 0, stream>>>(static_cast<const Fp16*>(table), tokens, hidden, x);
  }
  return cudaGetLastError();
}

cudaError_t RmsNorm(Half dt, const float* x, const void* weight, uint32_t n, uint32_t hidden, float eps, void* out,
                    cudaStream_t stream) {
  if (dt == Half::kBf16) {
    RmsNormKernel<<<n, 256, 0, stream>>>(x, static_cast<const Bf16*>(weight), hidden, eps, static_cast<Bf16*>(out));
  } else {
    RmsNormKernel<<<n, 256, 0, stream>>>(x, static_cast<const Fp16*>(weight), hidden, eps, static_cast<Fp16*>(out));
  }
  return cudaGetLastError();
}

cudaError_t RopeAndStoreKv(Half dt, void* qkv, const float* inv_freq, const AttentionShape& shape, const PagedKv& kv,
                           cudaStream_t stream) {
  if (dt == Half::kBf16) {
    RopeKvKernel<<<shape.n, 256, 0, stream>>>(static_cast<Bf16*>(qkv), inv_freq, shape, kv);
  } else {
    RopeKvKernel<<<shape.n, 256, 0, stream>>>(static_cast<Fp16*>(qkv), inv_freq, shape, kv);
  }
  return cudaGetLastError();
}

bool AttentionHeadDimSupported(uint32_t head_dim) {
  return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128 || head_dim == 256;
}

cudaError_t PagedAttention(Half dt, const void* qkv, const AttentionShape& shape, const PagedKv& kv, void* out,
                           cudaStream_t stream) {
  if (!AttentionHeadDimSupported(shape.head_dim) || shape.kv_heads == 0 || shape.heads % shape.kv_heads != 0) {
    return cudaErrorInvalidValue;
  }
  return dt == Half::kBf16 ? Attention<Bf16>(qkv, shape, kv, out, stream) : Attention<Fp16>(qkv, shape, kv, out, stream);
}

cudaError_t SwiGlu(Half dt, const void* gate_up, uint32_t n, uint32_t inter, void* out, cudaStream_t stream) {
  const unsigned blocks = ElementwiseBlocks(size_t{n} * inter);
  if (dt == Half::kBf16) {
    SwiGluKernel<<<blocks, 256, 0, stream>>>(static_cast<const Bf16*>(gate_up), n, inter, static_cast<Bf16*>(out));
  } else {
    SwiGluKernel<<<blocks, 256, 0, stream>>>(static_cast<const Fp16*>(gate_up), n, inter, static_cast<Fp16*>(out));
  }
  return cudaGetLastError();
}

}  // namespace kvstash::node::cuda
