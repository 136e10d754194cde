#include "gpu/block_codec.h"

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

namespace kvstash::gpu {
namespace {

uint64_t RoundUp16(uint64_t v) { return (v + 15) / 16 * 16; }

float QMax(BlockCodec codec) { return codec == BlockCodec::kInt8 ? 127.0f : 448.0f; }

float LoadElement(KvDType dtype, const std::byte* p) {
  switch (dtype) {
    case KvDType::kF16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return HalfToFloat(h);
    }
    case KvDType::kBF16: {
      uint16_t b;
      std::memcpy(&b, p, 2);
      return BFloat16ToFloat(b);
    }
    case KvDType::kF32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
  }
  return 0.0f;
}

void StoreElement(KvDType dtype, float v, std::byte* p) {
  switch (dtype) {
    case KvDType::kF16: {
      const uint16_t h = FloatToHalf(v);
      std::memcpy(p, &h, 2);
      return;
    }
    case KvDType::kBF16: {
      const uint16_t b = FloatToBFloat16(v);
      std::memcpy(p, &b, 2);
      return;
    }
    case KvDType::kF32:
      std::memcpy(p, &v, 4);
      return;
  }
}

// Element index inside a raw block of (layer, kv, token, head, d).
uint64_t RawIndex(const BlockShape& s, uint32_t l, uint32_t kv, uint32_t t, uint32_t h, uint32_t d) {
  return ((((uint64_t{l} * 2 + kv) * s.tokens + t) * s.heads + h) * s.head_dim) + d;
}

void PutU32(std::byte* p, uint32_t v) { std::memcpy(p, &v, 4); }
uint32_t GetU32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

std::string_view ToString(BlockCodec codec) {
  switch (codec) {
    case BlockCodec::kNone: return "none";
    case BlockCodec::kFp8E4M3: return "fp8-e4m3";
    case BlockCodec::kInt8: return "int8";
  }
  return "unknown";
}

Result<BlockCodec> ParseBlockCodec(std::string_view name) {
  if (name == "none") return BlockCodec::kNone;
  if (name == "fp8-e4m3" || name == "fp8" || name == "e4m3") return BlockCodec::kFp8E4M3;
  if (name == "int8") return BlockCodec::kInt8;
  return InvalidArgument("unknown block codec '" + std::string(name) + "' (none, fp8-e4m3, int8)");
}

std::string_view ToString(KvDType dtype) {
  switch (dtype) {
    case KvDType::kF16: return "fp16";
    case KvDType::kBF16: return "bf16";
    case KvDType::kF32: return "fp32";
  }
  return "unknown";
}

Result<KvDType> ParseKvDType(std::string_view n) {
  if (n == "fp16" || n == "f16" || n == "float16" || n == "half") return KvDType::kF16;
  if (n == "bf16" || n == "bfloat16") return KvDType::kBF16;
  if (n == "fp32" || n == "f32" || n == "float32" || n == "float") return KvDType::kF32;
  return InvalidArgument("unknown KV dtype '" + std::string(n) + "' (fp16, bf16, fp32)");
}

uint32_t DTypeBytes(KvDType dtype) { return dtype == KvDType::kF32 ? 4 : 2; }

Result<NamespaceCodec> CodecOfNamespace(std::string_view ns) {
  std::string_view rest = ns;
  for (int field = 0; field < 2; ++field) {
    const size_t bar = rest.find('|');
    if (bar == std::string_view::npos) {
      return InvalidArgument("namespace '" + std::string(ns) + "' has no dtype field (model|layout|dtype[:codec]|rank)");
    }
    rest.remove_prefix(bar + 1);
  }
  const std::string_view field = rest.substr(0, rest.find('|'));
  NamespaceCodec out;
  const size_t colon = field.find(':');
  out.dtype = field.substr(0, colon);
  if (colon != std::string_view::npos) {
    KVSTASH_ASSIGN_OR_RETURN(out.codec, ParseBlockCodec(field.substr(colon + 1)));
  }
  return out;
}

Result<CodecGeometry> CodecGeometry::Make(const BlockShape& s, BlockCodec codec) {
  if (s.layers == 0 || s.tokens == 0 || s.heads == 0 || s.head_dim == 0) {
    return InvalidArgument("block shape has a zero dimension");
  }
  if (codec == BlockCodec::kNone) return InvalidArgument("codec 'none' has no encoded form");
  if (s.dtype != KvDType::kF16 && s.dtype != KvDType::kBF16 && s.dtype != KvDType::kF32) {
    return InvalidArgument("unknown KV dtype");
  }
  CodecGeometry g;
  g.shape = s;
  g.codec = codec;
  g.group_elements = uint64_t{s.tokens} * s.head_dim;
  g.layer_elements = 2 * uint64_t{s.tokens} * s.heads * s.head_dim;
  const uint64_t total = g.layer_elements * s.layers;
  if (g.layer_elements > (1ULL << 32) / 2 || total >= (1ULL << 32)) {
    return InvalidArgument("block of " + std::to_string(total) + " elements exceeds the codec's 2^32 limit");
  }
  g.raw_bytes = total * DTypeBytes(s.dtype);
  g.scales_bytes = RoundUp16(2ULL * s.heads * 4);
  g.payload_bytes = RoundUp16(g.layer_elements);
  g.section_bytes = g.scales_bytes + g.payload_bytes;
  g.encoded_bytes = kCodecHeaderBytes + uint64_t{s.layers} * g.section_bytes;
  return g;
}

void WriteCodecHeader(const CodecGeometry& g, std::byte* out) {
  std::memset(out, 0, kCodecHeaderBytes);
  PutU32(out, kCodecMagic);
  out[4] = std::byte{kCodecVersion};
  out[5] = std::byte{static_cast<uint8_t>(g.codec)};
  out[6] = std::byte{static_cast<uint8_t>(g.shape.dtype)};
  PutU32(out + 8, g.shape.layers);
  PutU32(out + 12, g.shape.tokens);
  PutU32(out + 16, g.shape.heads);
  PutU32(out + 20, g.shape.head_dim);
}

Status CheckCodecHeader(const CodecGeometry& g, const std::byte* h) {
  if (GetU32(h) != kCodecMagic) return DataLoss("not an encoded KV block (bad magic)");
  if (std::to_integer<uint32_t>(h[4]) != kCodecVersion) {
    return DataLoss("encoded KV block version " + std::to_string(std::to_integer<uint32_t>(h[4])) + ", expected 1");
  }
  if (std::to_integer<uint8_t>(h[5]) != static_cast<uint8_t>(g.codec)) {
    return DataLoss("encoded KV block uses another codec than " + std::string(ToString(g.codec)));
  }
  if (std::to_integer<uint8_t>(h[6]) != static_cast<uint8_t>(g.shape.dtype)) {
    return DataLoss("encoded KV block has another dtype than " + std::string(ToString(g.shape.dtype)));
  }
  if (GetU32(h + 8) != g.shape.layers || GetU32(h + 12) != g.shape.tokens || GetU32(h + 16) != g.shape.heads ||
      GetU32(h + 20) != g.shape.head_dim) {
    return DataLoss("encoded KV block has shape [" + std::to_string(GetU32(h + 8)) + ", 2, " +
                    std::to_string(GetU32(h + 12)) + ", " + std::to_string(GetU32(h + 16)) + ", " +
                    std::to_string(GetU32(h + 20)) + "], expected [" + std::to_string(g.shape.layers) + ", 2, " +
                    std::to_string(g.shape.tokens) + ", " + std::to_string(g.shape.heads) + ", " +
                    std::to_string(g.shape.head_dim) + "]");
  }
  return Status::Ok();
}

void EncodeBlockHost(const CodecGeometry& g, const std::byte* raw, std::byte* encoded) {
  const BlockShape& s = g.shape;
  const uint32_t eb = DTypeBytes(s.dtype);
  const float qmax = QMax(g.codec);
  WriteCodecHeader(g, encoded);
  for (uint32_t l = 0; l < s.layers; ++l) {
    std::byte* section = encoded + g.SectionOffset(l);
    std::memset(section, 0, g.scales_bytes);
    std::memset(section + g.scales_bytes + g.layer_elements, 0, g.payload_bytes - g.layer_elements);
    uint8_t* payload = reinterpret_cast<uint8_t*>(section + g.scales_bytes);
    for (uint32_t kv = 0; kv < 2; ++kv) {
      for (uint32_t h = 0; h < s.heads; ++h) {
        float amax = 0.0f;
        for (uint32_t t = 0; t < s.tokens; ++t) {
          for (uint32_t d = 0; d < s.head_dim; ++d) {
            const float x = LoadElement(s.dtype, raw + RawIndex(s, l, kv, t, h, d) * eb);
            if (std::isfinite(x)) amax = std::fmax(amax, std::fabs(x));
          }
        }
        const float scale = amax / qmax;
        const float inv = amax > 0.0f ? std::fmin(qmax / amax, FLT_MAX) : 0.0f;
        std::memcpy(section + (uint64_t{kv} * s.heads + h) * 4, &scale, 4);
        for (uint32_t t = 0; t < s.tokens; ++t) {
          for (uint32_t d = 0; d < s.head_dim; ++d) {
            const uint64_t i = RawIndex(s, l, kv, t, h, d);
            const float v = LoadElement(s.dtype, raw + i * eb) * inv;
            const uint64_t at = i - uint64_t{l} * g.layer_elements;
            payload[at] = g.codec == BlockCodec::kInt8 ? static_cast<uint8_t>(FloatToInt8Saturate(v))
                                                       : FloatToE4M3Saturate(v);
          }
        }
      }
    }
  }
}

Status DecodeBlockHost(const CodecGeometry& g, const std::byte* encoded, std::byte* raw) {
  KVSTASH_RETURN_IF_ERROR(CheckCodecHeader(g, encoded));
  const BlockShape& s = g.shape;
  const uint32_t eb = DTypeBytes(s.dtype);
  for (uint32_t l = 0; l < s.layers; ++l) {
    const std::byte* section = encoded + g.SectionOffset(l);
    const uint8_t* payload = reinterpret_cast<const uint8_t*>(section + g.scales_bytes);
    for (uint64_t at = 0; at < g.layer_elements; ++at) {
      const uint32_t h = static_cast<uint32_t>((at / s.head_dim) % s.heads);
      const uint32_t kv = static_cast<uint32_t>(at / (g.layer_elements / 2));
      float scale;
      std::memcpy(&scale, section + (uint64_t{kv} * s.heads + h) * 4, 4);
      const float q = g.codec == BlockCodec::kInt8 ? static_cast<float>(static_cast<int8_t>(payload[at]))
                                                   : E4M3ToFloat(payload[at]);
      StoreElement(s.dtype, q * scale, raw + (uint64_t{l} * g.layer_elements + at) * eb);
    }
  }
  return Status::Ok();
}

void CodecError::Merge(const CodecError& o) {
  elements += o.elements;
  max_abs = std::max(max_abs, o.max_abs);
  max_rel = std::max(max_rel, o.max_rel);
  max_abs_over_amax = std::max(max_abs_over_amax, o.max_abs_over_amax);
  sum_sq_err += o.sum_sq_err;
  sum_sq_ref += o.sum_sq_ref;
  rel_l2 = sum_sq_ref > 0 ? std::sqrt(sum_sq_err / sum_sq_ref) : 0.0;
}

CodecError MeasureCodecError(const CodecGeometry& g, const std::byte* original, const std::byte* decoded) {
  const BlockShape& s = g.shape;
  const uint32_t eb = DTypeBytes(s.dtype);
  CodecError e;
  for (uint32_t l = 0; l < s.layers; ++l) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      for (uint32_t h = 0; h < s.heads; ++h) {
        double amax = 0;
        for (uint32_t t = 0; t < s.tokens; ++t) {
          for (uint32_t d = 0; d < s.head_dim; ++d) {
            const double x = LoadElement(s.dtype, original + RawIndex(s, l, kv, t, h, d) * eb);
            if (std::isfinite(x)) amax = std::max(amax, std::fabs(x));
          }
        }
        for (uint32_t t = 0; t < s.tokens; ++t) {
          for (uint32_t d = 0; d < s.head_dim; ++d) {
            const uint64_t i = RawIndex(s, l, kv, t, h, d);
            const double x = LoadElement(s.dtype, original + i * eb);
            if (!std::isfinite(x)) continue;
            const double y = LoadElement(s.dtype, decoded + i * eb);
            const double err = std::isfinite(y) ? std::fabs(x - y) : std::numeric_limits<double>::infinity();
            ++e.elements;
            e.max_abs = std::max(e.max_abs, err);
            if (amax > 0) e.max_abs_over_amax = std::max(e.max_abs_over_amax, err / amax);
            if (amax > 0 && std::fabs(x) >= amax / 16) e.max_rel = std::max(e.max_rel, err / std::fabs(x));
            e.sum_sq_err += err * err;
            e.sum_sq_ref += x * x;
          }
        }
      }
    }
  }
  e.rel_l2 = e.sum_sq_ref > 0 ? std::sqrt(e.sum_sq_err / e.sum_sq_ref) : 0.0;
  return e;
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  const uint32_t mant = h & 0x3FF;
  if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal, exact
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

float BFloat16ToFloat(uint16_t b) { return std::bit_cast<float>(uint32_t{b} << 16); }

uint16_t FloatToBFloat16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  if (std::isnan(f)) return static_cast<uint16_t>(((u >> 16) & 0x8000u) | 0x7FFFu);  // as __float2bfloat16_rn
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

uint16_t FloatToHalf(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  if (std::isnan(f)) return static_cast<uint16_t>(sign | 0x7FFFu);  // as __float2half_rn
  const float a = std::fabs(f);
  if (a >= 65520.0f) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds to infinity
  if (a < 6.103515625e-05f) {
    // Subnormal (or zero): units of 2^-24, exact scaling then round to nearest even.
    const float units = std::nearbyint(a * 16777216.0f);
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(units));  // 1024 units = smallest normal
  }
  const uint32_t ua = std::bit_cast<uint32_t>(a);
  const uint32_t exp = (ua >> 23) - 112;
  uint32_t half = (exp << 10) | ((ua >> 13) & 0x3FF);
  const uint32_t rest = ua & 0x1FFF;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) ++half;  // carries into the exponent correctly
  return static_cast<uint16_t>(sign | half);
}

float E4M3ToFloat(uint8_t q) {
  const bool neg = q & 0x80;
  const uint32_t e = (q >> 3) & 0xF;
  const uint32_t m = q & 7;
  float v;
  if (e == 15 && m == 7) {
    v = std::numeric_limits<float>::quiet_NaN();
  } else if (e == 0) {
    v = std::ldexp(static_cast<float>(m), -9);
  } else {
    v = std::ldexp(static_cast<float>(8 + m), static_cast<int>(e) - 10);
  }
  return neg ? -v : v;
}

uint8_t FloatToE4M3Saturate(float f) {
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  if (std::isnan(f)) return sign | 0x7F;
  const float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7E;
  if (a < 0.015625f) {  // below 2^-6: subnormal units of 2^-9 (8 units = the smallest normal, code 0x08)
    return sign | static_cast<uint8_t>(std::nearbyint(a * 512.0f));
  }
  int e2 = 0;
  const float frac = std::frexp(a, &e2);  // a = frac * 2^e2, frac in [0.5, 1)
  const int exp = e2 - 1;                 // a = (2 * frac) * 2^exp
  uint32_t mant = static_cast<uint32_t>(std::nearbyint((2.0f * frac - 1.0f) * 8.0f));
  uint32_t biased = static_cast<uint32_t>(exp + 7);
  if (mant == 8) {
    mant = 0;
    ++biased;
  }
  return static_cast<uint8_t>(sign | (biased << 3) | mant);
}

int8_t FloatToInt8Saturate(float f) {
  if (std::isnan(f)) return 0;
  const float r = std::nearbyint(std::fmin(std::fmax(f, -127.0f), 127.0f));
  return static_cast<int8_t>(r);
}

}  // namespace kvstash::gpu
