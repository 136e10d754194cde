// Hashing and equality of BlockKeys for the eviction policies' own maps, inlined: a policy does a
// handful of map operations per block reference under the tier's policy mutex, and BlockKeyHash
// (common/) calls the out-of-line High()/Low() while std::array's == calls memcmp. Keys are
// already uniform hashes, so folding the halves (read in host byte order) is enough.
#pragma once

#include <cstdint>
#include <cstring>

#include "kvstash/block_key.h"

namespace kvstash::tiers {

struct PolicyKeyHash {
  size_t operator()(const BlockKey& key) const noexcept {
    uint64_t halves[2];
    std::memcpy(halves, key.bytes().data(), sizeof(halves));
    uint64_t h = halves[0] ^ (halves[1] * 0x9E3779B97F4A7C15ULL);
    h ^= h >> 32;  // the bytes may be in either order in a half: fold the high bits down
    return h;
  }
};

struct PolicyKeyEq {
  bool operator()(const BlockKey& a, const BlockKey& b) const noexcept {
    uint64_t x[2], y[2];
    std::memcpy(x, a.bytes().data(), sizeof(x));
    std::memcpy(y, b.bytes().data(), sizeof(y));
    return x[0] == y[0] && x[1] == y[1];
  }
};

}  // namespace kvstash::tiers
