// Block codec: optional lossy compression of a stored KV block to one byte per element (fp8 e4m3 or
// int8) with one float32 scale per (layer, K/V, head), halving the bytes stored and moved for
// fp16/bf16 caches. Host-only: no CUDA headers. This file is the format and the CPU reference; the
// CUDA kernels (block_codec_device.h) produce the same bytes and decode to the same bits.
//
// Selection is per namespace: the dtype field of the namespace string names the codec after a
// colon, "<model>|<layout>|<dtype>[:<codec>]|<rank>", e.g. "llama3-8b|vllm-per-layer|bf16:fp8-e4m3|tp0".
// The namespace seeds every block key, so encoded and raw blocks of the same prefix never share a key,
// and a reader that uses the namespace's codec never sees bytes of another format. No codec
// (the default) means blocks are stored raw, exactly as gathered.
//
// Raw block: [layers, 2, tokens, heads, head_dim] elements of `dtype` (KvLayout's block buffer).
// Encoded block (version 1), little-endian:
//   header   32 bytes: "KVQ1" magic (u32 0x3151564B), u8 version = 1, u8 codec, u8 dtype, u8 0,
//            u32 layers, u32 tokens, u32 heads, u32 head_dim, 8 bytes 0
//   then per layer one section of section_bytes (16-byte aligned), so a layer range is one
//   contiguous slice (layer-wise streaming):
//     scales   float32[2][heads], zero-padded to 16 bytes
//     payload  1 byte per element, [2][tokens][heads][head_dim], zero-padded to 16 bytes
//
// Quantisation of one (layer, kv, head) group of tokens * head_dim elements x:
//   amax  = max |x| over the finite elements (0 when none)
//   scale = amax / qmax (qmax = 448 for e4m3, 127 for int8), stored
//   inv   = amax > 0 ? min(qmax / amax, FLT_MAX) : 0
//   q     = e4m3: round-to-nearest-even of x * inv, saturated to +-448 (NaN stays NaN, +-inf -> +-448)
//           int8: round-to-nearest-even of x * inv, clamped to [-127, 127] (NaN -> 0)
//   decode: float(q) * scale, rounded to nearest even into dtype
// All arithmetic is single IEEE float operations (no fused multiply-add), so the CPU and the GPU
// agree bit for bit.
//
// Thread-safety: free functions and immutable values; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "kvstash/result.h"

namespace kvstash::gpu {

enum class BlockCodec : uint8_t { kNone = 0, kFp8E4M3 = 1, kInt8 = 2 };
// "none", "fp8-e4m3", "int8".
std::string_view ToString(BlockCodec codec);
// The names above ("fp8" and "e4m3" are accepted for kFp8E4M3); INVALID_ARGUMENT otherwise.
Result<BlockCodec> ParseBlockCodec(std::string_view name);

// Element types the codec reads and writes (1-byte caches are already one byte per element).
enum class KvDType : uint8_t { kF16 = 1, kBF16 = 2, kF32 = 3 };
std::string_view ToString(KvDType dtype);  // "fp16", "bf16", "fp32"
// "fp16"/"f16"/"float16"/"half", "bf16"/"bfloat16", "fp32"/"f32"/"float32"/"float"; INVALID_ARGUMENT otherwise.
Result<KvDType> ParseKvDType(std::string_view name);
uint32_t DTypeBytes(KvDType dtype);

// What a namespace string says about its blocks' format.
struct NamespaceCodec {
  std::string_view dtype;  // the dtype field without the codec suffix
  BlockCodec codec = BlockCodec::kNone;
};
// Reads the third '|'-separated field of `ns` ("<dtype>[:<codec>]"). INVALID_ARGUMENT when the
// namespace has fewer than three fields or names an unknown codec. The view points into `ns`.
Result<NamespaceCodec> CodecOfNamespace(std::string_view ns);

inline constexpr uint32_t kCodecMagic = 0x3151564B;  // "KVQ1"
inline constexpr uint32_t kCodecVersion = 1;
inline constexpr uint64_t kCodecHeaderBytes = 32;

struct BlockShape {
  uint32_t layers = 0;
  uint32_t tokens = 0;  // page_tokens
  uint32_t heads = 0;   // num_kv_heads
  uint32_t head_dim = 0;
  KvDType dtype = KvDType::kBF16;
};

// Byte geometry of one block in both forms. Build with Make (validated).
struct CodecGeometry {
  BlockShape shape;
  BlockCodec codec = BlockCodec::kFp8E4M3;
  uint64_t group_elements = 0;   // tokens * head_dim: elements under one scale
  uint64_t layer_elements = 0;   // 2 * tokens * heads * head_dim
  uint64_t raw_bytes = 0;        // layers * layer_elements * dtype bytes
  uint64_t scales_bytes = 0;     // 2 * heads * 4, rounded up to 16
  uint64_t payload_bytes = 0;    // layer_elements, rounded up to 16
  uint64_t section_bytes = 0;    // scales_bytes + payload_bytes
  uint64_t encoded_bytes = 0;    // kCodecHeaderBytes + layers * section_bytes

  // INVALID_ARGUMENT for a zero dimension, codec kNone, or a raw block over 4 GiB of elements
  // (element indexes are 32-bit in the kernels).
  static Result<CodecGeometry> Make(const BlockShape& shape, BlockCodec codec);
  // Offset of layer `l`'s section in an encoded block.
  uint64_t SectionOffset(uint32_t l) const { return kCodecHeaderBytes + uint64_t{l} * section_bytes; }
};

// The 32 header bytes of an encoded block of this geometry.
void WriteCodecHeader(const CodecGeometry& g, std::byte* out);
// OK when `header` is a version-1 header of exactly this geometry; DATA_LOSS naming the first
// difference otherwise (wrong magic, version, codec, dtype or shape).
Status CheckCodecHeader(const CodecGeometry& g, const std::byte* header);

// CPU reference. `raw` holds g.raw_bytes, `encoded` g.encoded_bytes (every byte is written,
// padding as zeros). Decode checks the header first (DATA_LOSS, `raw` untouched).
// REQUIRES: the buffers do not overlap.
void EncodeBlockHost(const CodecGeometry& g, const std::byte* raw, std::byte* encoded);
Status DecodeBlockHost(const CodecGeometry& g, const std::byte* encoded, std::byte* raw);

// Error of a decoded block against the original, over the finite original elements.
struct CodecError {
  uint64_t elements = 0;
  double max_abs = 0;            // max |x - x'|
  double max_rel = 0;            // max |x - x'| / |x| over elements with |x| >= amax(group) / 16
  double max_abs_over_amax = 0;  // max |x - x'| / amax(group): the quantisation step bound
  double rel_l2 = 0;             // ||x - x'||_2 / ||x||_2
  double sum_sq_err = 0;         // accumulators, so blocks can be merged
  double sum_sq_ref = 0;
  void Merge(const CodecError& other);
};
CodecError MeasureCodecError(const CodecGeometry& g, const std::byte* original, const std::byte* decoded);

// Scalar conversions the reference uses (exposed for tests). Round to nearest even.
float HalfToFloat(uint16_t h);
float BFloat16ToFloat(uint16_t b);
uint16_t FloatToHalf(float f);
uint16_t FloatToBFloat16(float f);
float E4M3ToFloat(uint8_t q);
uint8_t FloatToE4M3Saturate(float f);
int8_t FloatToInt8Saturate(float f);

}  // namespace kvstash::gpu
