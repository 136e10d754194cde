// Synthetic KV blocks with the statistics of real attention caches, for the codec's error
// measurements and tests (no model downloads). Host-only.
//
// Element (layer, kv, token, head, d) = N(0, 1) * sigma(layer, kv, head) * f, where
//   sigma = exp(N(0, 0.5)) per (layer, kv, head): heads differ in range by a few times;
//   K: f = channel factor exp(N(0, 0.3)) per (layer, head, d), and 2 outlier channels per head
//      scaled by 8 (the per-channel outliers of keys that KIVI and KVQuant report);
//   V: f = token factor exp(N(0, 0.3)) per (layer, token, head) (values vary per token).
// Rounded to nearest even into the block's dtype. Deterministic for a given seed.
//
// Thread-safety: free function; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gpu/block_codec.h"

namespace kvstash::gpu {

// Writes one raw block of `shape` (BlockShape layout, raw_bytes of CodecGeometry) at `raw`.
void FillRealisticKv(const BlockShape& shape, uint64_t seed, std::byte* raw);

}  // namespace kvstash::gpu
