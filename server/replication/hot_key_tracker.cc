#include "server/replication/hot_key_tracker.h"

#include <algorithm>

namespace kvstash::server {

HotKeyTracker::HotKeyTracker(uint32_t hot_rate, const Clock* clock)
    : hot_rate_(std::max(1u, hot_rate)), clock_(clock) {}

bool HotKeyTracker::Record(const BlockKey& key) {
  Shard& shard = shards_[BlockKeyHash{}(key) % kShards];
  const uint64_t now = clock_->NowMs();
  MutexLock lock(shard.mu);
  if (now - shard.window_start_ms >= kWindowMs) {
    shard.counts.clear();
    shard.window_start_ms = now;
  }
  return ++shard.counts[key] == hot_rate_;
}

}  // namespace kvstash::server
