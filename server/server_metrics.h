// The daemon's metric families (README "Metrics" lists them). Hot paths hold references to the
// children they update; tier usage is mirrored into gauges by a collector at scrape time.
//
// Thread-safety: Record* may be called from any thread.
#pragma once

#include <array>
#include <string>
#include <string_view>

#include "common/metrics.h"
#include "common/mutex.h"
#include "kvstash/reuse_advice.h"
#include "kvstash/status.h"
#include "tiers/tier_stats.h"
#include "transfer/transfer_server.h"

namespace kvstash::server {

class ServerMetrics {
 public:
  // Registers every family in `registry` and a collector that mirrors `stats` (must outlive this).
  ServerMetrics(metrics::Registry& registry, const tiers::TierStats& stats, std::string_view version);

  // One finished RPC: its op name, outcome and latency.
  // Counts a call refused before it ran (no token, a bad one, a role too low): in kvstash_ops_total
  // under its code, without a latency sample.
  void RecordRefusal(std::string_view op, const Status& status);
  void RecordOp(std::string_view op, const Status& status, double seconds);
  void RecordLookupBlocks(uint64_t hits, uint64_t misses);
  void RecordGetBlocks(uint64_t hits, uint64_t misses);
  void RecordPuts(uint64_t stored, uint64_t deduplicated);
  // Block bytes committed, by how they arrived: inside an RPC, or by one-sided writes.
  void RecordPutBytes(uint64_t inline_bytes, uint64_t one_sided_bytes);
  // ... or by the two-sided UCX protocol (two-phase or eager puts).
  void RecordPutBytesTwoSided(uint64_t bytes);
  // Committed blocks that came with reuse advice (PutOptions::advice).
  void RecordAdvice(ReuseAdvice advice, uint64_t blocks);
  // A block that failed its checksum on the daemon before being sent inline (not sent).
  void RecordCorruptBlock();
  uint64_t corrupt_blocks() const;
  // Mirrors `transfer`'s refused data-plane messages into kvstash_data_plane_refused_total at
  // every scrape. Call once before serving; `transfer` must outlive the registry's scrapes.
  void WatchDataPlane(const transfer::TransferServer* transfer);
  uint64_t put_bytes_inline() const;
  uint64_t put_bytes_one_sided() const;
  uint64_t put_bytes_two_sided() const;

  uint64_t lookup_hit_blocks() const;
  uint64_t lookup_miss_blocks() const;
  uint64_t get_hits() const;
  uint64_t get_misses() const;
  uint64_t puts_stored() const;
  uint64_t puts_deduplicated() const;

 private:
  void Collect();

  const tiers::TierStats& stats_;
  metrics::Family<metrics::Counter>& ops_;
  metrics::Family<metrics::Histogram>& op_duration_;
  metrics::Family<metrics::Counter>& lookup_blocks_;
  metrics::Family<metrics::Counter>& get_blocks_;
  metrics::Family<metrics::Counter>& put_blocks_;
  metrics::Family<metrics::Counter>& put_bytes_;
  metrics::Counter& put_bytes_inline_;
  metrics::Counter& put_bytes_one_sided_;
  metrics::Counter& put_bytes_two_sided_;
  metrics::Family<metrics::Counter>& put_advice_;
  metrics::Counter& put_advice_likely_;
  metrics::Counter& put_advice_unlikely_;
  metrics::Counter& lookup_hits_;
  metrics::Counter& lookup_misses_;
  metrics::Counter& get_hits_;
  metrics::Counter& get_misses_;
  metrics::Counter& puts_stored_;
  metrics::Counter& puts_deduplicated_;
  metrics::Family<metrics::Gauge>& capacity_;
  metrics::Family<metrics::Gauge>& used_;
  metrics::Family<metrics::Gauge>& reserved_;
  metrics::Family<metrics::Gauge>& blocks_;
  metrics::Gauge& active_leases_;
  metrics::Gauge& pinned_blocks_;
  metrics::Gauge& reservations_open_;
  metrics::Gauge& regions_held_for_late_writes_;
  metrics::Family<metrics::Counter>& evictions_;
  metrics::Family<metrics::Counter>& evicted_bytes_;
  metrics::Counter& reservations_expired_;
  metrics::Counter& checksum_mismatches_;
  Mutex collect_mu_;
  tiers::TierCounters last_counters_ GUARDED_BY(collect_mu_);
  tiers::TierManagerCounters last_manager_ GUARDED_BY(collect_mu_);
  metrics::Family<metrics::Counter>& demotions_;
  metrics::Counter& promotions_;
  tiers::TierCounters last_hbm_counters_ GUARDED_BY(collect_mu_);
  metrics::Family<metrics::Counter>& hbm_placements_;
  metrics::Family<metrics::Counter>& hbm_demotions_;
  metrics::Family<metrics::Counter>& hbm_promotions_;
  metrics::Counter& hbm_direct_leases_;
  metrics::Counter& ssd_kept_for_owners_;
  metrics::Counter& ssd_checksum_drops_;
  metrics::Counter& ssd_index_errors_;
  metrics::Counter& ssd_index_recoveries_;
  metrics::Gauge& ssd_index_writable_;
  metrics::Gauge& ssd_index_quarantined_;
  metrics::Counter& corrupt_blocks_;
  metrics::Family<metrics::Counter>& refused_;
  const transfer::TransferServer* transfer_ = nullptr;
  std::array<uint64_t, transfer::kRefusalKinds> last_refused_ GUARDED_BY(collect_mu_){};
};

}  // namespace kvstash::server
