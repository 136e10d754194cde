// Deterministic block contents for tests: the bytes a test puts under `key`, recomputed to check
// what comes back. Distinct keys give distinct bytes, and no 8-byte word is zero, so a zeroed or
// stale copy never passes for the block.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kvstash/block_key.h"

namespace kvstash::testing {

inline std::vector<std::byte> BytesFor(const BlockKey& key, size_t size) {
  std::vector<std::byte> out(size);
  uint64_t x = key.Low() ^ (key.High() * 0x9E3779B97F4A7C15ULL);
  for (size_t i = 0; i < size; i += 8) {
    x += 0x9E3779B97F4A7C15ULL;  // splitmix64
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z = (z ^ (z >> 31)) | 0x0101010101010101ULL;
    std::memcpy(out.data() + i, &z, std::min<size_t>(8, size - i));
  }
  return out;
}

}  // namespace kvstash::testing
