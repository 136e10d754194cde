// Conversions between fp32 and the two 16-bit float formats a checkpoint may store. Upcasts are
// exact (every 16-bit value is an fp32 value); downcasts round to nearest, ties to even.
#pragma once

#include <bit>
#include <cstdint>

namespace kvstash::node {

// bfloat16 is the upper 16 bits of an fp32.
inline float Bf16ToF32(uint16_t h) { return std::bit_cast<float>(uint32_t{h} << 16); }

// IEEE 754 binary16: normals, subnormals, signed zeros, infinities; a NaN keeps its sign and
// payload (shifted into fp32's top mantissa bits).
float F16ToF32(uint16_t h);

// Round to nearest even; a NaN stays a NaN (quiet, sign and top payload bits kept).
uint16_t F32ToBf16(float f);

// Round to nearest even; magnitudes past the largest half (65504, after rounding) become infinity,
// tiny ones become subnormals or zero. A NaN stays a NaN (quiet, sign and top payload bits kept).
uint16_t F32ToF16(float f);

}  // namespace kvstash::node
