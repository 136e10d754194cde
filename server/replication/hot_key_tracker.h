// HotKeyTracker: counts block accesses per key in one-second windows and says when a key crosses
// the configured rate, once per window. Memory is bounded by the keys accessed within a window
// (each shard forgets its counts when its window rolls over).
//
// Thread-safety: Record may be called from any thread concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <unordered_map>

#include "common/clock.h"
#include "common/mutex.h"
#include "kvstash/block_key.h"

namespace kvstash::server {

class HotKeyTracker {
 public:
  // `hot_rate`: accesses per second at which a key is hot (>= 1).
  HotKeyTracker(uint32_t hot_rate, const Clock* clock);

  // Counts one access; true exactly when this access makes the key reach the rate in the
  // current window.
  bool Record(const BlockKey& key);

 private:
  static constexpr size_t kShards = 16;
  static constexpr uint64_t kWindowMs = 1'000;
  struct Shard {
    Mutex mu;
    uint64_t window_start_ms = 0;
    std::unordered_map<BlockKey, uint32_t, BlockKeyHash> counts;
  };
  const uint32_t hot_rate_;
  const Clock* clock_;
  std::array<Shard, kShards> shards_;
};

}  // namespace kvstash::server
