// gpu/block_codec: the format, the scalar conversions and the CPU reference (everywhere), and the
// CUDA kernels against the reference, byte for byte and bit for bit, on fresh data with poisoned
// outputs (when built with CUDA and a device exists; skipped with the reason otherwise).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gpu/block_codec.h"
#include "gpu/kv_sample.h"
#ifdef KVSTASH_HAVE_CUDA
#include "gpu/block_codec_device.h"
#include "gpu/cuda_util.h"
#endif

namespace kvstash::gpu {
namespace {

constexpr std::byte kPoison{0xA5};

CodecGeometry Geo(BlockShape s, BlockCodec c) {
  auto g = CodecGeometry::Make(s, c);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  return *g;
}

TEST(CodecScalar, HalfAndBFloat16RoundTripEveryValue) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float h = HalfToFloat(static_cast<uint16_t>(b));
    if (std::isnan(h)) {
      EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(h))));
    } else {
      ASSERT_EQ(FloatToHalf(h), b) << b;
    }
    const float f = BFloat16ToFloat(static_cast<uint16_t>(b));
    if (!std::isnan(f)) {
      ASSERT_EQ(FloatToBFloat16(f), b) << b;
    }
  }
}

TEST(CodecScalar, RoundingToNearestEven) {
  EXPECT_EQ(FloatToHalf(1.0f + 0x1p-11f), 0x3C00);           // tie -> even
  EXPECT_EQ(FloatToHalf(1.0f + 3 * 0x1p-11f), 0x3C02);       // tie -> even (up)
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7C00);
  EXPECT_EQ(FloatToHalf(0x1p-25f), 0x0000);                  // half of the smallest subnormal: tie -> 0
  EXPECT_EQ(FloatToHalf(3 * 0x1p-25f), 0x0002);
  EXPECT_EQ(FloatToBFloat16(1.0f + 0x1p-8f), 0x3F80);
  EXPECT_EQ(FloatToBFloat16(1.0f + 3 * 0x1p-8f), 0x3F82);
  EXPECT_EQ(FloatToE4M3Saturate(1.0625f), 0x38);  // between 1 and 1.125: even
  EXPECT_EQ(FloatToE4M3Saturate(1.1875f), 0x3A);  // between 1.125 and 1.25: even
  EXPECT_EQ(FloatToE4M3Saturate(0x1p-10f), 0x00);
  EXPECT_EQ(FloatToE4M3Saturate(3 * 0x1p-10f), 0x02);
  EXPECT_EQ(FloatToE4M3Saturate(0.015625f), 0x08);  // smallest normal
  EXPECT_EQ(FloatToE4M3Saturate(447.0f), 0x7E);
  EXPECT_EQ(FloatToE4M3Saturate(1000.0f), 0x7E);
  EXPECT_EQ(FloatToE4M3Saturate(-std::numeric_limits<float>::infinity()), 0xFE);
  EXPECT_EQ(FloatToE4M3Saturate(std::numeric_limits<float>::quiet_NaN()) & 0x7F, 0x7F);
  EXPECT_EQ(FloatToE4M3Saturate(-0.0f), 0x80);
  EXPECT_EQ(FloatToInt8Saturate(2.5f), 2);
  EXPECT_EQ(FloatToInt8Saturate(3.5f), 4);
  EXPECT_EQ(FloatToInt8Saturate(-200.0f), -127);
  EXPECT_EQ(FloatToInt8Saturate(std::numeric_limits<float>::quiet_NaN()), 0);
}

TEST(CodecScalar, E4M3EveryCodeRoundTrips) {
  for (uint32_t q = 0; q < 256; ++q) {
    const float f = E4M3ToFloat(static_cast<uint8_t>(q));
    if ((q & 0x7F) == 0x7F) {
      EXPECT_TRUE(std::isnan(f));
      continue;
    }
    EXPECT_EQ(FloatToE4M3Saturate(f), q) << q;
  }
  EXPECT_EQ(E4M3ToFloat(0x7E), 448.0f);
  EXPECT_EQ(E4M3ToFloat(0x01), 0x1p-9f);
}

TEST(CodecFormat, GeometryNamespaceAndValidation) {
  const CodecGeometry g = Geo({32, 16, 8, 128, KvDType::kBF16}, BlockCodec::kFp8E4M3);
  EXPECT_EQ(g.raw_bytes, 2u << 20);
  EXPECT_EQ(g.encoded_bytes, 32 + 32 * (64 + 32768u));
  EXPECT_LT(double(g.encoded_bytes) / double(g.raw_bytes), 0.51);
  EXPECT_EQ(g.SectionOffset(1) % 16, 0u);
  EXPECT_FALSE(CodecGeometry::Make({0, 16, 8, 128, KvDType::kBF16}, BlockCodec::kInt8).ok());
  EXPECT_FALSE(CodecGeometry::Make({32, 16, 8, 128, KvDType::kBF16}, BlockCodec::kNone).ok());
  EXPECT_FALSE(CodecGeometry::Make({4096, 4096, 64, 128, KvDType::kF32}, BlockCodec::kInt8).ok());

  auto ns = CodecOfNamespace("llama3-8b|vllm-per-layer|bf16:fp8-e4m3|tp0");
  ASSERT_TRUE(ns.ok());
  EXPECT_EQ(ns->dtype, "bf16");
  EXPECT_EQ(ns->codec, BlockCodec::kFp8E4M3);
  ns = CodecOfNamespace("m|layer-major|fp16|0");
  ASSERT_TRUE(ns.ok());
  EXPECT_EQ(ns->codec, BlockCodec::kNone);
  EXPECT_EQ(CodecOfNamespace("m|layer-major|fp16:int8").value().codec, BlockCodec::kInt8);
  EXPECT_FALSE(CodecOfNamespace("m|layer-major|fp16:zstd|0").ok());
  EXPECT_FALSE(CodecOfNamespace("m|fp16").ok());
  EXPECT_EQ(ParseBlockCodec("e4m3").value(), BlockCodec::kFp8E4M3);
  EXPECT_EQ(ParseKvDType("bfloat16").value(), KvDType::kBF16);
  EXPECT_FALSE(ParseKvDType("int4").ok());
}

struct Bound {
  double over_amax, rel;
};
// Quantisation half-step over amax, plus the rounding of the decoded value into the dtype.
Bound BoundFor(BlockCodec c, KvDType d) {
  const double dt = d == KvDType::kBF16 ? 0x1p-8 : d == KvDType::kF16 ? 0x1p-11 : 0x1p-24;
  if (c == BlockCodec::kInt8) return {0.5 / 127 + dt, 0.5 / (127.0 / 16) + dt};
  return {16.0 / 448 + dt, 0x1p-4 + dt};
}

TEST(CodecHost, RoundTripErrorWithinTheQuantisationBound) {
  for (BlockCodec c : {BlockCodec::kFp8E4M3, BlockCodec::kInt8}) {
    for (KvDType d : {KvDType::kF16, KvDType::kBF16, KvDType::kF32}) {
      const CodecGeometry g = Geo({4, 16, 4, 64, d}, c);
      std::vector<std::byte> raw(g.raw_bytes), enc(g.encoded_bytes, kPoison), back(g.raw_bytes, kPoison);
      FillRealisticKv(g.shape, 11 + static_cast<int>(d), raw.data());
      EncodeBlockHost(g, raw.data(), enc.data());
      ASSERT_TRUE(DecodeBlockHost(g, enc.data(), back.data()).ok());
      const CodecError e = MeasureCodecError(g, raw.data(), back.data());
      const Bound b = BoundFor(c, d);
      SCOPED_TRACE(std::string(ToString(c)) + " " + std::string(ToString(d)));
      EXPECT_EQ(e.elements, g.raw_bytes / DTypeBytes(d));
      EXPECT_LE(e.max_abs_over_amax, b.over_amax);
      EXPECT_LE(e.max_rel, b.rel);
      EXPECT_GT(e.rel_l2, 0.0);
      EXPECT_LT(e.rel_l2, 0.06);  // int8 suffers more from the 8x key outlier channels
    }
  }
}

TEST(CodecHost, DeterministicPaddingZerosAndSpecials) {
  // Odd sizes: padding after the scales (3 heads * 2 * 4 = 24 -> 32) and the payload (2*5*3*3 = 90 -> 96).
  const CodecGeometry g = Geo({2, 5, 3, 3, KvDType::kF16}, BlockCodec::kFp8E4M3);
  std::vector<std::byte> raw(g.raw_bytes);
  FillRealisticKv(g.shape, 5, raw.data());
  std::vector<std::byte> a(g.encoded_bytes, kPoison), b(g.encoded_bytes, std::byte{0x5A});
  EncodeBlockHost(g, raw.data(), a.data());
  EncodeBlockHost(g, raw.data(), b.data());
  EXPECT_EQ(a, b);
  for (uint64_t i = g.SectionOffset(0) + 24; i < g.SectionOffset(0) + 32; ++i) EXPECT_EQ(a[i], std::byte{0});

  // Head 0 of layer 0 K: zeros, +-inf and NaN among finite values; head 1: all zeros.
  const uint16_t inf = 0x7C00, ninf = 0xFC00, nan = 0x7E00, zero = 0, two = 0x4000;
  auto put = [&](uint32_t t, uint32_t h, uint32_t d, uint16_t v) {
    std::memcpy(raw.data() + ((t * 3 + h) * 3 + d) * 2, &v, 2);
  };
  for (uint32_t t = 0; t < 5; ++t)
    for (uint32_t d = 0; d < 3; ++d) put(t, 1, d, zero), put(t, 0, d, two);
  put(0, 0, 0, inf), put(0, 0, 1, ninf), put(0, 0, 2, nan);
  for (BlockCodec c : {BlockCodec::kFp8E4M3, BlockCodec::kInt8}) {
    const CodecGeometry gc = Geo(g.shape, c);
    std::vector<std::byte> enc(gc.encoded_bytes), back(gc.raw_bytes, kPoison);
    EncodeBlockHost(gc, raw.data(), enc.data());
    ASSERT_TRUE(DecodeBlockHost(gc, enc.data(), back.data()).ok());
    auto get = [&](uint32_t t, uint32_t h, uint32_t d) {
      uint16_t v;
      std::memcpy(&v, back.data() + ((t * 3 + h) * 3 + d) * 2, 2);
      return HalfToFloat(v);
    };
    EXPECT_EQ(get(1, 0, 0), 2.0f);   // amax over the finite values is 2: exact
    EXPECT_EQ(get(0, 0, 0), 2.0f);   // +inf saturates to +amax
    EXPECT_EQ(get(0, 0, 1), -2.0f);
    if (c == BlockCodec::kFp8E4M3) {
      EXPECT_TRUE(std::isnan(get(0, 0, 2)));
    } else {
      EXPECT_EQ(get(0, 0, 2), 0.0f);
    }
    for (uint32_t t = 0; t < 5; ++t) EXPECT_EQ(get(t, 1, 2), 0.0f);
  }
}

TEST(CodecHost, DecodeRefusesAnotherFormatAndLeavesOutputAlone) {
  const CodecGeometry g = Geo({2, 4, 2, 8, KvDType::kBF16}, BlockCodec::kInt8);
  std::vector<std::byte> raw(g.raw_bytes), enc(g.encoded_bytes);
  FillRealisticKv(g.shape, 3, raw.data());
  EncodeBlockHost(g, raw.data(), enc.data());
  std::vector<std::byte> out(g.raw_bytes, kPoison);
  const CodecGeometry other_codec = Geo(g.shape, BlockCodec::kFp8E4M3);
  EXPECT_EQ(DecodeBlockHost(other_codec, enc.data(), out.data()).code(), StatusCode::kDataLoss);
  const CodecGeometry other_shape = Geo({2, 4, 2, 8, KvDType::kF16}, BlockCodec::kInt8);
  EXPECT_EQ(DecodeBlockHost(other_shape, enc.data(), out.data()).code(), StatusCode::kDataLoss);
  enc[0] = std::byte{0};
  EXPECT_EQ(DecodeBlockHost(g, enc.data(), out.data()).code(), StatusCode::kDataLoss);
  EXPECT_EQ(out, std::vector<std::byte>(g.raw_bytes, kPoison));
}

#ifdef KVSTASH_HAVE_CUDA

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

class CodecDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    const DeviceSummary d = ProbeDevices();
    if (d.count == 0) GTEST_SKIP() << "no CUDA device: " << d.reason;
  }
};

// Encodes and decodes `n` blocks on the device (raw buffers `offset` bytes past 16-byte alignment) and
// compares with the CPU reference: encoded bytes equal, decoded bits equal.
void CheckAgainstReference(const CodecGeometry& g, size_t n, size_t offset, uint64_t seed) {
  SCOPED_TRACE(std::string(ToString(g.codec)) + " " + std::string(ToString(g.shape.dtype)) + " head_dim " +
               std::to_string(g.shape.head_dim) + " offset " + std::to_string(offset) + " blocks " + std::to_string(n));
  const size_t rstride = (g.raw_bytes + 15) / 16 * 16 + 16, estride = (g.encoded_bytes + 15) / 16 * 16 + 16;
  std::vector<std::byte> raw(n * rstride), ref_enc(n * estride, kPoison), ref_dec(n * rstride, kPoison);
  for (size_t i = 0; i < n; ++i) {
    FillRealisticKv(g.shape, seed + i, raw.data() + i * rstride + offset);
    EncodeBlockHost(g, raw.data() + i * rstride + offset, ref_enc.data() + i * estride);
    ASSERT_TRUE(DecodeBlockHost(g, ref_enc.data() + i * estride, ref_dec.data() + i * rstride + offset).ok());
  }
  auto draw = DeviceBuffer::Allocate(raw.size());
  auto denc = DeviceBuffer::Allocate(ref_enc.size());
  auto dbad = DeviceBuffer::Allocate(4);
  ASSERT_TRUE(draw.ok() && denc.ok() && dbad.ok());
  CUDA_OK(cudaMemcpy(draw->data(), raw.data(), raw.size(), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(denc->data(), 0xA5, ref_enc.size()));
  std::vector<const std::byte*> craw;
  std::vector<std::byte*> wraw, wenc;
  std::vector<const std::byte*> cenc;
  for (size_t i = 0; i < n; ++i) {
    wraw.push_back(draw->data() + i * rstride + offset);
    craw.push_back(wraw.back());
    wenc.push_back(denc->data() + i * estride);
    cenc.push_back(wenc.back());
  }
  ASSERT_TRUE(EncodeBlocksDevice(g, craw, wenc, nullptr).ok());
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<std::byte> got(ref_enc.size());
  CUDA_OK(cudaMemcpy(got.data(), denc->data(), got.size(), cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], ref_enc[i]) << "encoded byte " << i;

  // Decode the reference's encoded bytes into poisoned raw buffers; corrupt one block's header.
  std::vector<std::byte> enc_in = ref_enc;
  const size_t bad = n / 2;
  enc_in[bad * estride + 8] ^= std::byte{1};  // layer count
  CUDA_OK(cudaMemcpy(denc->data(), enc_in.data(), enc_in.size(), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(draw->data(), 0xA5, raw.size()));
  CUDA_OK(cudaMemset(dbad->data(), 0, 4));
  ASSERT_TRUE(DecodeBlocksDevice(g, cenc, wraw, reinterpret_cast<uint32_t*>(dbad->data()), nullptr).ok());
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<std::byte> dec(raw.size());
  CUDA_OK(cudaMemcpy(dec.data(), draw->data(), dec.size(), cudaMemcpyDeviceToHost));
  uint32_t bad_count = 0;
  CUDA_OK(cudaMemcpy(&bad_count, dbad->data(), 4, cudaMemcpyDeviceToHost));
  EXPECT_EQ(bad_count, 1u);
  for (size_t i = 0; i < n; ++i) {
    const std::byte* want = i == bad ? nullptr : ref_dec.data() + i * rstride + offset;
    const std::byte* have = dec.data() + i * rstride + offset;
    for (size_t b = 0; b < g.raw_bytes; ++b) {
      ASSERT_EQ(have[b], want ? want[b] : kPoison) << "block " << i << " byte " << b;
    }
  }
}

TEST_F(CodecDevice, MatchesTheReferenceForEveryCodecDtypeAndPath) {
  uint64_t seed = 1000;
  for (BlockCodec c : {BlockCodec::kFp8E4M3, BlockCodec::kInt8}) {
    for (KvDType d : {KvDType::kF16, KvDType::kBF16, KvDType::kF32}) {
      CheckAgainstReference(Geo({3, 16, 4, 64, d}, c), 5, 0, seed += 10);   // 16-byte path
      CheckAgainstReference(Geo({3, 16, 4, 64, d}, c), 3, DTypeBytes(d), seed += 10);  // element path
      CheckAgainstReference(Geo({2, 32, 2, 128, d}, c), 3, 0, seed += 10);  // groups beyond the register cache
      CheckAgainstReference(Geo({2, 5, 3, 12, d}, c), 4, 0, seed += 10);    // head_dim % 8 != 0, padding
    }
  }
}

TEST_F(CodecDevice, ManyBlocksSplitIntoSeveralLaunches) {
  CheckAgainstReference(Geo({2, 4, 2, 16, KvDType::kBF16}, BlockCodec::kFp8E4M3), kMaxCodecBlocksPerLaunch + 45, 0, 77);
}

TEST_F(CodecDevice, BadArgumentsAreRejectedBeforeLaunch) {
  const CodecGeometry g = Geo({2, 4, 2, 16, KvDType::kBF16}, BlockCodec::kInt8);
  alignas(16) std::byte x[16];
  const std::byte* one[1] = {x};
  std::byte* two[2] = {x, x};
  EXPECT_EQ(EncodeBlocksDevice(g, one, two, nullptr).code(), StatusCode::kInvalidArgument);
  std::byte* null1[1] = {nullptr};
  EXPECT_EQ(EncodeBlocksDevice(g, one, null1, nullptr).code(), StatusCode::kInvalidArgument);
  std::byte* odd[1] = {x + 4};
  EXPECT_EQ(EncodeBlocksDevice(g, one, odd, nullptr).code(), StatusCode::kInvalidArgument);
  const std::byte* odd_raw[1] = {x + 1};
  std::byte* ok1[1] = {x};
  EXPECT_EQ(EncodeBlocksDevice(g, odd_raw, ok1, nullptr).code(), StatusCode::kInvalidArgument);
}

#endif  // KVSTASH_HAVE_CUDA

}  // namespace
}  // namespace kvstash::gpu
